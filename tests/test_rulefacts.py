"""The facts the rules see: made before a command stage's event, as when it is reached."""

from __future__ import annotations

from blackhole.protocol import replies as R
from blackhole.protocol.core import SMTPConnection
from blackhole.protocol.events import MessageReceived, StageReached
from blackhole.protocol.hooks import Stage, bits
from blackhole.protocol.settings import SessionSettings
from blackhole.rules.match import Facts
from blackhole.server.rulefacts import Where, command_facts, stage_facts

WHERE = Where("s1", 2525, "127.0.0.1:2525", "192.0.2.1", "edge")
SESSION = [
    b"EHLO client.example\r\n",
    b"VRFY someone\r\n",
    b"NOOP\r\n",
    b"MAIL FROM:<a@example.com> SIZE=100\r\n",
    b"RCPT TO:<b@example.com>\r\n",
    b"RCPT TO:<c@example.com>\r\n",
    b"DATA\r\n",
    b"Subject: x\r\n\r\nbody\r\n.\r\n",
    b"RSET\r\n",
    b"HELO again.example\r\n",
    b"MAIL FROM:<>\r\n",
    b"RCPT TO:<d@example.com>\r\n",
    b"QUIT\r\n",
]
# Reported without asking screen(): not a command's own stage.
UNSCREENED = (Stage.CONNECT, Stage.COMMAND, Stage.AUTH, Stage.CONTENT)


def test_command_facts_are_the_facts_of_the_event_reported() -> None:
    # Steering.screen decides a command stage with command_facts before the
    # core reports it; the rules must see what stage_facts makes of the event.
    core = SMTPConnection(SessionSettings(mailname="mx.test"))
    core.watch = bits(Stage)
    early: list[Facts | None] = []

    def screen(stage: Stage, value: str | None) -> bool:
        early.append(None if stage is Stage.MAIL else command_facts(WHERE, core, stage, value))
        return True

    core.screen = screen
    core.start()
    seen: list[Stage] = []
    for line in SESSION:
        core.receive_data(line)
        while (event := core.next_event()) is not None:
            if isinstance(event, StageReached):
                if event.stage in UNSCREENED:
                    core.resolve(None)
                    continue
                assert early, event
                made = early.pop(0)
                seen.append(event.stage)
                if made is not None:
                    assert made == stage_facts(WHERE, core, event), event
                core.resolve(None)
            elif isinstance(event, MessageReceived):
                core.send(R.R250_OK)  # the message: accepted
        core.data_to_send()
    assert not early
    assert set(seen) >= {
        Stage.HELO, Stage.VRFY, Stage.NOOP, Stage.MAIL, Stage.RCPT, Stage.DATA, Stage.RSET,
        Stage.QUIT,
    }  # fmt: skip
