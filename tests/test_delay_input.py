"""Input while a delayed answer waits: reading goes on, so that a client that
hangs up is seen at once (test_adversarial_observe.py), and what it sends is
held for after the answer.

Each test drives a real server (the ``Blackhole`` testing API) over real
sockets.
"""

from __future__ import annotations

import socket
from pathlib import Path

from blackhole.testing import Blackhole
from tests.jsonlines import written_records
from tests.proctools import wait_until
from tests.smtpclient import Client

BODY = b"Subject: held\r\n\r\nhello\r\n"


def test_a_half_close_behind_pipelined_commands_gets_every_reply() -> None:
    """``printf ... | nc``: the client sends its whole session, shuts its
    sending side and reads. Its EOF comes during the delay, behind commands
    still owed answers: they are answered, then the session closes."""
    with Blackhole(delay="1") as bh:
        with socket.create_connection((bh.host, bh.port), timeout=30) as sock:
            sock.sendall(
                b"EHLO nc\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
                + BODY + b".\r\nNOOP\r\nQUIT\r\n"
            )  # fmt: skip
            sock.shutdown(socket.SHUT_WR)
            said = b""
            while chunk := sock.recv(65536):
                said += chunk
        codes = [line[:3] for line in said.split(b"\r\n") if line[3:4] == b" "]
        assert codes == [b"220", b"250", b"250", b"250", b"354", b"250", b"250", b"221"]
        counts = bh.stats()["messages"]
        assert counts == {"accepted": 1, "rejected": 0, "deferred": 0, "dropped": 0}


def test_plaintext_behind_a_delayed_starttls_is_dropped() -> None:
    """RFC 3207 section 6: what the client pipelines behind STARTTLS is
    discarded, also when a rule's delay held it back: the session goes on
    over TLS, answering what comes over TLS."""
    with Blackhole(rules=[{"name": "slow-tls", "at": "starttls", "delay": 2}]) as bh:
        client = Client.connect(bh.port)
        client.expect("EHLO plain", 250)
        client.send(b"STARTTLS\r\n")
        wait_until(lambda: bh.stats()["rules"].get("slow-tls") == 1, what="the delay begun")
        client.send(b"NOOP\r\n")  # during the delay
        assert client.reply().code == 220
        assert client.buf == b""  # nothing answered the plaintext NOOP
        client.sock = bh.client_ssl_context().wrap_socket(client.sock, server_hostname=bh.host)
        client.expect("EHLO secure", 250)
        client.expect("NOOP", 250)
        client.expect("QUIT", 221)
        client.close()


def test_a_client_leaving_at_a_delayed_content_stage_counts_all_it_sent(
    tmp_path: Path,
) -> None:
    """Bytes held at a content stage are content, not commands owed answers:
    the client's close ends the session at once, and the message is counted
    dropped with every octet that had arrived."""
    events = tmp_path / "events.jsonl"
    rule = {"name": "slow", "at": "content", "after_bytes": 100, "delay": 60}
    content = b"Subject: slow\r\n\r\n" + b"x" * 200
    with Blackhole(rules=[rule], event_log=str(events)) as bh:
        client = Client.connect(bh.port)
        client.expect("EHLO stage", 250)
        client.mail_rcpt()
        client.expect("DATA", 354)
        client.send(content)
        wait_until(lambda: bh.stats()["rules"].get("slow") == 1, what="the content stage")
        client.close()  # a FIN, behind the content
        wait_until(lambda: bh.stats()["messages"]["dropped"] == 1, what="the session's end")
        assert bh.stats()["bytes"] == len(content)
    [line] = [
        record for record in written_records(events.read_text()) if record["type"] == "message"
    ]
    assert (line["outcome"], line["size"]) == ("dropped", len(content))
