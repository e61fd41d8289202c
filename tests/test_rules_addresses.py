"""The mox and ses address conventions, exactly as RULES.md states them."""

from __future__ import annotations

import pytest

from blackhole.protocol.hooks import Stage, Verdict
from blackhole.rules.addresses import address_verdict, mox, parse_conventions, ses
from blackhole.rules.match import Facts


def code(verdict: Verdict | None) -> tuple[int, str | None] | str | None:
    if verdict is None:
        return None
    if verdict.hang:
        return "hang"
    assert verdict.reply is not None
    return verdict.reply.code, verdict.reply.enhanced


def at_end(*recipients: str, sender: str = "s@x") -> Facts:
    return Facts(Stage.END, sender=sender, recipients=recipients)


@pytest.mark.parametrize(
    ("localpart", "expected"),
    [
        ("temperror", (451, "4.0.0")),
        ("usertemperror", (451, "4.0.0")),
        ("PermError", (550, "5.0.0")),
        ("x452", (452, "4.0.0")),
        ("400", (400, "4.0.0")),
        ("599", (599, "5.0.0")),
        ("521", (521, "5.0.0")),
        ("timeout", "hang"),
        ("user399", None),  # below 400: ordinary
        ("user600", None),
        ("user", None),
        ("temperrorx", None),  # must end with it
    ],
)
def test_mox_at_end_by_default(localpart: str, expected: object) -> None:
    assert code(mox(Stage.END, at_end(f"{localpart}@example.com"))) == expected
    # ...and not at rcpt unless the localpart starts with rcptto.
    assert mox(Stage.RCPT, Facts(Stage.RCPT, recipient=f"{localpart}@example.com")) is None


def test_mox_rcptto_fails_at_rcpt_not_at_end() -> None:
    facts = Facts(Stage.RCPT, recipient="rcptto451@example.com")
    assert code(mox(Stage.RCPT, facts)) == (451, "4.0.0")
    assert code(mox(Stage.RCPT, Facts(Stage.RCPT, recipient="rcpttotimeout@x"))) == "hang"
    assert mox(Stage.RCPT, Facts(Stage.RCPT, recipient="rcptto@x")) is None
    assert mox(Stage.END, at_end("rcptto451@example.com")) is None


def test_mox_mailfrom_fails_at_mail_by_the_senders_suffix() -> None:
    assert code(mox(Stage.MAIL, Facts(Stage.MAIL, sender="mailfrompermerror@x"))) == (550, "5.0.0")
    assert code(mox(Stage.MAIL, Facts(Stage.MAIL, sender="MailFrom554@x"))) == (554, "5.0.0")
    assert mox(Stage.MAIL, Facts(Stage.MAIL, sender="mailfrom@x")) is None
    # A sender that does not start with mailfrom decides nothing.
    assert mox(Stage.MAIL, Facts(Stage.MAIL, sender="temperror@x")) is None
    assert mox(Stage.MAIL, Facts(Stage.MAIL, sender="")) is None  # null sender
    # Decided at MAIL: the recipients' suffixes do not also fail the data.
    assert mox(Stage.END, at_end("temperror@x", sender="mailfrom@x")) is None


def test_mox_end_first_failing_recipient_and_lmtp_per_recipient() -> None:
    assert code(mox(Stage.END, at_end("ok@x", "permerror@x", "temperror@x"))) == (550, "5.0.0")
    assert mox(Stage.END, at_end("ok@x")) is None
    lmtp = Facts(Stage.END, recipients=("ok@x", "permerror@x"), recipient="ok@x")
    assert mox(Stage.END, lmtp) is None
    assert mox(Stage.MAIL, Facts(Stage.MAIL)) is None


def test_mox_replies_are_valid_smtp() -> None:
    verdict = mox(Stage.END, at_end("x450@x"))
    assert verdict is not None and verdict.reply is not None
    assert verdict.reply.wire.startswith(b"450 4.0.0 ") and verdict.reply.wire.endswith(b"\r\n")
    assert verdict.rule == "mox"


@pytest.mark.parametrize(
    ("recipient", "expected"),
    [
        ("bounce@simulator.amazonses.com", (550, "5.1.1")),
        ("bounce+label-1@simulator.amazonses.com", (550, "5.1.1")),
        ("suppressionlist@simulator.amazonses.com", (550, "5.1.1")),
        ("Bounce@Simulator.AmazonSES.com", (550, "5.1.1")),
        ("success@simulator.amazonses.com", None),
        ("ooto@simulator.amazonses.com", None),
        ("complaint@simulator.amazonses.com", None),
        ("bounce@example.com", None),
        ("bounced@simulator.amazonses.com", None),
    ],
)
def test_ses_at_rcpt(recipient: str, expected: object) -> None:
    assert code(ses(Stage.RCPT, Facts(Stage.RCPT, recipient=recipient))) == expected


def test_ses_accepts_success_ooto_complaint_after_the_data() -> None:
    for mailbox in ("success", "ooto", "complaint", "success+run7"):
        verdict = ses(Stage.END, at_end(f"{mailbox}@simulator.amazonses.com"))
        assert code(verdict) == (250, "2.0.0")
        assert verdict is not None and verdict.rule == "ses"
    # Mixed with an ordinary recipient: the mode decides.
    assert ses(Stage.END, at_end("success@simulator.amazonses.com", "a@example.com")) is None
    assert ses(Stage.END, at_end()) is None
    assert ses(Stage.MAIL, Facts(Stage.MAIL, sender="success@simulator.amazonses.com")) is None


def test_conventions_config_and_order() -> None:
    assert parse_conventions("mox, ses") == ("mox", "ses")
    assert parse_conventions(" SES ") == ("ses",)
    with pytest.raises(ValueError, match="unknown address convention 'moz': use mox, ses or both"):
        parse_conventions("moz")
    facts = Facts(Stage.RCPT, recipient="bounce@simulator.amazonses.com")
    assert code(address_verdict(("mox", "ses"), Stage.RCPT, facts)) == (550, "5.1.1")
    assert address_verdict(("mox",), Stage.RCPT, facts) is None
    assert address_verdict((), Stage.RCPT, facts) is None
