"""Parsing of MAIL and RCPT arguments: paths and ESMTP parameters.

Every function returns either the parsed value or the ``Reply`` that the
command deserves, so the caller never has to guess an error code.

Grammar (RFC 5321 section 4.1.2, extended for UTF-8 by RFC 6531 section 3.3)::

    Reverse-path  = Path / "<>"
    Forward-path  = Path
    Path          = "<" [ A-d-l ":" ] Mailbox ">"
    A-d-l         = At-domain *( "," At-domain )      ; source route, ignored
    Mailbox       = Local-part "@" ( Domain / address-literal )
    Local-part    = Dot-string / Quoted-string
    esmtp-param   = esmtp-keyword ["=" esmtp-value]
    esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
    esmtp-value   = 1*(%d33-60 / %d62-126)             ; plus UTF-8 (RFC 6531)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from blackhole.protocol import replies as R
from blackhole.protocol.limits import (
    MAX_DOMAIN,
    MAX_ENVID,
    MAX_LOCAL_PART,
    MAX_ORCPT,
    MAX_PATH,
)
from blackhole.protocol.memo import remember
from blackhole.protocol.replies import Reply

_U = "\\x80-\\U0010ffff"  # UTF8-non-ascii (RFC 6531), checked against SMTPUTF8 later
_ATEXT = rf"[A-Za-z0-9!#$%&'*+\-/=?^_`{{|}}~{_U}]"
_DOT_STRING = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_QUOTED = rf'"(?:[\x20\x21\x23-\x5b\x5d-\x7e{_U}]|\\[\x20-\x7e])*"'
_LABEL = rf"[A-Za-z0-9{_U}](?:[A-Za-z0-9\-{_U}]*[A-Za-z0-9{_U}])?"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*"
# RFC 5321 4.1.3: IPv4, "IPv6:" and general address literals; kept loose on the
# inside because a sink has no reason to refuse an odd literal.
_ADDR_LITERAL = r"\[[\x21-\x5a\x5e-\x7e]+\]"
_LOCAL = rf"(?:{_DOT_STRING}|{_QUOTED})"
_MAILBOX = rf"({_LOCAL})@({_DOMAIN}|{_ADDR_LITERAL})"
_ADL = rf"@{_DOMAIN}(?:,@{_DOMAIN})*:"

_PATH_RE = re.compile(rf"<(?:{_ADL})?{_MAILBOX}>")
_POSTMASTER_RE = re.compile(r"<postmaster>", re.IGNORECASE)
_KEYWORD_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]*")
_VALUE_RE = re.compile(rf"[\x21-\x3c\x3e-\x7e{_U}]+")
# RFC 3461 section 4: xtext, with "+" and "=" only as "+" 2HEXCHAR (upper case).
_XTEXT_RE = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})+")
_ADDR_TYPE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]*")
_SIZE_RE = re.compile(r"[0-9]{1,20}")
_NOTIFY_WORDS = frozenset(("SUCCESS", "FAILURE", "DELAY"))


@dataclass(frozen=True, slots=True)
class MailParams:
    """What a MAIL command tells the transaction."""

    address: str  # "" for the null reverse-path
    size: int | None = None  # the SIZE= parameter (RFC 1870), if given
    smtputf8: bool = False
    binarymime: bool = False


def split_path(arg: str) -> tuple[str, str] | None:
    """Split ``<path> params`` into (path token, rest); None if there is no path."""
    arg = arg.lstrip(" ")
    if arg.startswith("<"):
        end = _path_end(arg)
        if end < 0:
            return None
        return arg[: end + 1], arg[end + 1 :]
    # Be liberal (RFC 1123 5.2.2 era clients): a bare address without brackets.
    token, _, rest = arg.partition(" ")
    return (f"<{token}>" if token else ""), (f" {rest}" if rest else "")


def _path_end(arg: str) -> int:
    """Index of the ``>`` closing the path, skipping quoted strings."""
    if '"' not in arg:
        return arg.find(">")  # the common case, at C speed
    quoted = False
    escaped = False
    for i, ch in enumerate(arg):
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == ">" and not quoted:
            return i
    return -1


def parse_path(path: str, *, allow_null: bool, allow_postmaster: bool) -> str | None:
    """Validate a ``<...>`` path and return the mailbox ("" for ``<>``), or None."""
    if path == "<>":
        return "" if allow_null else None
    if allow_postmaster and _POSTMASTER_RE.fullmatch(path):
        return path[1:-1]
    m = _PATH_RE.fullmatch(path)
    if m is None:
        return None
    local, domain = m.group(1), m.group(2)
    if len(local.encode()) > MAX_LOCAL_PART or len(domain.encode()) > MAX_DOMAIN:
        return None
    if len(path.encode()) - 2 > MAX_PATH:
        return None
    return f"{local}@{domain}"


def parse_params(rest: str) -> dict[str, str | None] | Reply:
    """``SP esmtp-param *(SP esmtp-param)`` -> {KEYWORD: value or None}."""
    params: dict[str, str | None] = {}
    if not rest:
        return params
    if not rest.startswith(" "):
        return R.R555_PARAM_SYNTAX
    for item in rest.split():
        keyword, eq, value = item.partition("=")
        if not _KEYWORD_RE.fullmatch(keyword) or (eq and not _VALUE_RE.fullmatch(value)):
            return R.R555_PARAM_SYNTAX
        key = keyword.upper()
        given = value if eq else None
        if key in params:
            # A parameter repeated with the same value says nothing new, and
            # real clients send it: smtplib's send_message() adds SMTPUTF8 and
            # BODY=8BITMIME itself for UTF-8 addresses, after the caller's own
            # mail_options=["SMTPUTF8"]. Only a contradiction is refused.
            if params[key] != given:
                return R.R555_DUPLICATE_PARAM
            continue
        params[key] = given
    return params


# parse_mail and parse_rcpt are pure, and their results (MailParams, str,
# Reply) are immutable, so they are memoised: a load test sends the same
# MAIL FROM and RCPT TO lines thousands of times, and a hit costs one C-level
# dictionary lookup instead of the regex work. Bounded: at most _CACHE entries
# of at most one command line each (512 octets), about 1 MB per process.
_CACHE: Final = 2048
_MAILS: Final[dict[tuple[str, int], MailParams | Reply]] = {}
_RCPTS: Final[dict[tuple[str, bool], str | Reply]] = {}


def _path_and_params(arg: str, *, mail: bool) -> tuple[str, dict[str, str | None]] | Reply:
    """The part MAIL and RCPT share: ``<path> [params]`` -> (address, params).

    MAIL allows the null path ``<>``; RCPT allows a bare ``<postmaster>``.
    """
    no_path, bad_path = (
        (R.R501_MAIL_SYNTAX, R.R501_SENDER_SYNTAX)
        if mail
        else (R.R501_RCPT_SYNTAX, R.R501_RCPT_ADDR_SYNTAX)
    )
    split = split_path(arg)
    if split is None:
        return bad_path  # "<" without its ">": a malformed path
    if not split[0]:
        return no_path
    token, rest = split
    address = parse_path(token, allow_null=mail, allow_postmaster=not mail)
    if address is None:
        return bad_path
    params = parse_params(rest)
    if isinstance(params, Reply):
        return params
    return address, params


def parse_mail(arg: str, max_size: int) -> MailParams | Reply:
    """The argument of MAIL (after ``FROM:``) -> MailParams or the error reply."""
    key = (arg, max_size)
    known = _MAILS.get(key)
    return known if known is not None else remember(_MAILS, key, _mail(arg, max_size), _CACHE)


def _mail(arg: str, max_size: int) -> MailParams | Reply:
    parsed = _path_and_params(arg, mail=True)
    if isinstance(parsed, Reply):
        return parsed
    address, params = parsed
    smtputf8 = binarymime = False
    size = None
    for key, value in params.items():
        if key == "SIZE":
            # RFC 1870 section 6: a declared size over the limit is refused at once.
            if value is None or not _SIZE_RE.fullmatch(value):
                return R.R555_PARAM_SYNTAX
            size = int(value)
            if size > max_size:
                return R.R552_TOO_BIG
        elif key == "BODY":
            body = (value or "").upper()
            if body not in ("7BIT", "8BITMIME", "BINARYMIME"):
                return R.R555_PARAM_SYNTAX
            binarymime = body == "BINARYMIME"
        elif key == "SMTPUTF8":
            if value is not None:
                return R.R555_PARAM_SYNTAX
            smtputf8 = True
        elif key == "RET":
            if (value or "").upper() not in ("FULL", "HDRS"):
                return R.R555_PARAM_SYNTAX
        elif key == "ENVID":
            if value is None or len(value) > MAX_ENVID or not _XTEXT_RE.fullmatch(value):
                return R.R555_PARAM_SYNTAX
        elif key == "AUTH":
            # RFC 4954 section 5: AUTH=<> or AUTH=xtext identity; accepted and ignored.
            if value is None or (value != "<>" and not _XTEXT_RE.fullmatch(value)):
                return R.R555_PARAM_SYNTAX
        else:
            return R.R555_UNKNOWN_PARAM
    if not smtputf8 and not address.isascii():
        return R.R553_NEED_SMTPUTF8
    return MailParams(address, size, smtputf8, binarymime)


def parse_rcpt(arg: str, smtputf8: bool) -> str | Reply:
    """The argument of RCPT (after ``TO:``) -> the address or the error reply."""
    key = (arg, smtputf8)
    known = _RCPTS.get(key)
    return known if known is not None else remember(_RCPTS, key, _rcpt(arg, smtputf8), _CACHE)


def _rcpt(arg: str, smtputf8: bool) -> str | Reply:
    parsed = _path_and_params(arg, mail=False)
    if isinstance(parsed, Reply):
        return parsed
    address, params = parsed
    for key, value in params.items():
        if key == "NOTIFY":
            if value is None or not _valid_notify(value.upper()):
                return R.R555_PARAM_SYNTAX
        elif key == "ORCPT":
            if value is None or not _valid_orcpt(value, smtputf8):
                return R.R555_PARAM_SYNTAX
        else:
            return R.R555_UNKNOWN_PARAM
    if not smtputf8 and not address.isascii():
        return R.R553_NEED_SMTPUTF8
    return address


def _valid_notify(value: str) -> bool:
    # RFC 3461 section 4.1: "NEVER" alone, or a list of SUCCESS, FAILURE, DELAY.
    if value == "NEVER":
        return True
    words = value.split(",")
    return all(w in _NOTIFY_WORDS for w in words) and len(set(words)) == len(words)


def _valid_orcpt(value: str, smtputf8: bool) -> bool:
    # RFC 3461 section 4.2: addr-type ";" xtext; RFC 6533 section 3 lets the
    # "utf-8" addr-type carry UTF-8 when the transaction is SMTPUTF8.
    if len(value) > MAX_ORCPT:
        return False
    addr_type, sep, addr = value.partition(";")
    if not sep or not _ADDR_TYPE_RE.fullmatch(addr_type) or not addr:
        return False
    if _XTEXT_RE.fullmatch(addr):
        return True
    return smtputf8 and addr_type.lower() == "utf-8" and _VALUE_RE.fullmatch(addr) is not None
