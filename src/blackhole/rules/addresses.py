"""Address conventions (``address_rules = mox, ses``): replies chosen by the address.

Pure functions of (stage, facts) -> Verdict | None, consulted after the rules
and before the mode (RULES.md "Address conventions").

``mox``, as ``mox localserve`` documents it: a recipient localpart ending in
``temperror`` fails with 451 4.0.0, ``permerror`` 550 5.0.0, three digits
400-599 that code (class-matching enhanced code X.0.0), ``timeout`` gets no
answer. The failure comes after the data by default; at RCPT when the
recipient's localpart starts with ``rcptto``; at MAIL when the sender's
starts with ``mailfrom`` (then the sender's own ending decides).

``ses``, the Amazon SES mailbox simulator's addresses at
``simulator.amazonses.com`` (``+label`` allowed): ``bounce`` and
``suppressionlist`` are refused with 550 5.1.1 at RCPT; ``success``, ``ooto``
and ``complaint`` are accepted after the data, whatever the mode.
"""

from __future__ import annotations

import re

from blackhole.protocol.hooks import Stage, Verdict
from blackhole.protocol.replies import Reply
from blackhole.rules.match import Facts

MOX = "mox"
SES = "ses"
CONVENTIONS = (MOX, SES)

_CODE = re.compile(r"[0-9]{3}\Z")
_MOX_TEMP = Verdict(MOX, reply=Reply(451, "4.0.0", "Temporary failure (address convention)"))
_MOX_PERM = Verdict(MOX, reply=Reply(550, "5.0.0", "Permanent failure (address convention)"))
_MOX_HANG = Verdict(MOX, hang=True)

SES_DOMAIN = "simulator.amazonses.com"
_SES_REFUSED = {
    "bounce": Verdict(SES, reply=Reply(550, "5.1.1", "Mailbox does not exist (SES simulator)")),
    "suppressionlist": Verdict(
        SES, reply=Reply(550, "5.1.1", "Address on the suppression list (SES simulator)")
    ),
}
_SES_ACCEPTED = frozenset(("success", "ooto", "complaint"))
_SES_OK = Verdict(SES, reply=Reply(250, "2.0.0", "OK: accepted by the SES mailbox simulator"))


def _split(address: str) -> tuple[str, str]:
    local, _, domain = address.rpartition("@")
    return (local, domain) if local else (address, "")


def _mox_verdict(localpart: str) -> Verdict | None:
    local = localpart.lower()
    if local.endswith("temperror"):
        return _MOX_TEMP
    if local.endswith("permerror"):
        return _MOX_PERM
    if local.endswith("timeout"):
        return _MOX_HANG
    if _CODE.search(local) and 400 <= (code := int(local[-3:])) <= 599:
        # RFC 3463: the enhanced code's class is the reply code's first digit.
        return Verdict(MOX, reply=Reply(code, f"{code // 100}.0.0", "Failure (address convention)"))
    return None


def _answered(facts: Facts) -> tuple[str, ...]:
    # After the data: on LMTP the recipient being answered, else all of them.
    return (facts.recipient,) if facts.recipient is not None else facts.recipients


def mox(stage: Stage, facts: Facts) -> Verdict | None:
    if stage is Stage.MAIL and facts.sender:
        local = _split(facts.sender)[0]
        if local.lower().startswith("mailfrom"):
            return _mox_verdict(local)
    elif stage is Stage.RCPT and facts.recipient is not None:
        local = _split(facts.recipient)[0]
        if local.lower().startswith("rcptto"):
            return _mox_verdict(local)
    elif stage is Stage.END:
        if facts.sender and _split(facts.sender)[0].lower().startswith("mailfrom"):
            return None  # decided at MAIL
        for recipient in _answered(facts):
            local = _split(recipient)[0]
            if not local.lower().startswith("rcptto") and (v := _mox_verdict(local)):
                return v
    return None


def _ses_mailbox(address: str) -> str | None:
    local, domain = _split(address)
    if domain.lower() != SES_DOMAIN:
        return None
    return local.partition("+")[0].lower()


def ses(stage: Stage, facts: Facts) -> Verdict | None:
    if stage is Stage.RCPT and facts.recipient is not None:
        mailbox = _ses_mailbox(facts.recipient)
        return _SES_REFUSED.get(mailbox) if mailbox is not None else None
    if stage is Stage.END:
        answered = _answered(facts)
        if answered and all(_ses_mailbox(r) in _SES_ACCEPTED for r in answered):
            return _SES_OK
    return None


_BY_NAME = {MOX: mox, SES: ses}


def parse_conventions(text: str) -> tuple[str, ...]:
    """``address_rules = mox, ses``: the names, in order; ValueError on any other."""
    names = tuple(n.strip().lower() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in _BY_NAME]
    if unknown:
        raise ValueError(f"unknown address convention {unknown[0]!r}: use mox, ses or both")
    return names


def address_verdict(enabled: tuple[str, ...], stage: Stage, facts: Facts) -> Verdict | None:
    """The first enabled convention that decides this event, in the order given."""
    for name in enabled:
        verdict = _BY_NAME[name](stage, facts)
        if verdict is not None:
            return verdict
    return None
