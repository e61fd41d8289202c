"""The value syntax of ``listen`` / ``tls_listen``.

A value is a comma-separated list of entries::

    ADDR:PORT [mode=MODE] [delay=N | delay=A-B] [name=NAME] [proxy=yes|no] [cert=PATH key=PATH]
              [starttls=yes|no]
    unix:PATH [socket_mode=0660] [...the same flags]

``ADDR`` may be empty (``:25``, every IPv4 address), ``::`` (``:::25``, every
IPv6 address), an IPv4 literal, a host name, or an IPv6 literal either in
brackets (``[::1]:25``) or bare (``::1:25``, where the last colon starts the
port, as the classic Blackhole read it).

Paths (``unix:``, ``cert=``, ``key=``) are checked by config/listenfiles.py.
Nothing here knows about line numbers: a bad value raises
``ListenError`` holding every problem in it, and the caller adds the location.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from blackhole.config import listenfiles
from blackhole.config.domain import is_domain
from blackhole.config.model import Listener

# The mode/delay grammar is the policy's, shared with the X-Blackhole-* headers;
# re-exported here for the config loader.
from blackhole.policy.modes import Delay, Mode, parse_delay, parse_mode

__all__ = ["ListenError", "parse_address", "parse_delay", "parse_listen", "parse_mode"]

ALL_IPV4 = "0.0.0.0"
ALL_IPV6 = "::"

_FLAGS = ("mode", "delay", "name", "proxy", "cert", "key", "socket_mode", "starttls")
# A listener's name is a metrics label value and a rules matcher argument:
# one word, nothing that needs quoting in either.
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SPACED_EQUALS = re.compile(r"\s*=\s*")


class ListenError(ValueError):
    """Every problem found in one ``listen``/``tls_listen`` value.

    Each problem is a phrase that reads after the key name, such as
    ``entry ':70000': port must be from 0 to 65535, not 70000``.
    """

    def __init__(self, problems: list[str], listeners: tuple[Listener, ...] = ()) -> None:
        self.problems = list(problems)
        # The entries that did parse, so that the caller can still check them
        # against the other listeners and report every problem at once.
        self.listeners = listeners
        super().__init__("; ".join(self.problems))


def parse_address(text: str) -> tuple[str, int]:
    """``ADDR:PORT`` -> ``(host, port)``; raises ValueError with a plain message.

    IPv6 literals come back in their compressed form, so that ``::0:1`` and
    ``::1`` are seen as the same address when duplicates are checked.
    """
    if text.startswith("["):
        close = text.find("]")
        if close == -1 or text[close + 1 : close + 2] != ":":
            raise ValueError("a bracketed IPv6 address needs the form [ADDR]:PORT")
        host, port_text = text[1:close], text[close + 2 :]
        host = _ipv6(host)
    elif ":" not in text:
        raise ValueError("no port; write HOST:PORT, or :PORT for every IPv4 address")
    else:
        host, _, port_text = text.rpartition(":")
        if host == "":
            host = ALL_IPV4
        elif ":" in host:
            host = _ipv6(host)
        elif re.fullmatch(r"[0-9.]+", host):
            try:
                host = str(ipaddress.IPv4Address(host))
            except ValueError:
                raise ValueError(f"{host!r} is not a valid IPv4 address") from None
        elif is_domain(host.removesuffix(".")):  # "host." is a fully qualified name
            host = host.lower()
        else:
            raise ValueError(f"{host!r} is not an IP address or a host name")
    return host, _port(port_text)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (as ``parse_address`` gives it) reaches only this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another host name: it may resolve anywhere


def _ipv6(host: str) -> str:
    try:
        return ipaddress.IPv6Address(host).compressed
    except ValueError:
        raise ValueError(
            f"{host!r} is not a valid IPv6 address (write IPv6 as [ADDR]:PORT or ADDR:PORT)"
        ) from None


def _port(text: str) -> int:
    # Port 0 lets the kernel choose a free port (the start-up line names it):
    # that is how tests run servers side by side without racing for ports.
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"port must be a number from 0 to 65535, not {text!r}")
    port = int(text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be from 0 to 65535, not {port}")
    return port


def parse_listen(
    value: str, *, tls: bool = False, lmtp: bool = False, base: Path | None = None
) -> tuple[Listener, ...]:
    """Parse a whole ``listen`` (``tls=True``: ``tls_listen``; ``lmtp=True``:
    ``lmtp_listen``) value; relative paths start from ``base`` (default: the
    current directory).

    Raises ``ListenError`` listing every bad entry and flag, not just the first.
    """
    base = base if base is not None else Path.cwd()
    listeners: list[Listener] = []
    problems: list[str] = []
    entries = value.split(",")
    for index, entry in enumerate(entries, start=1):
        # "mode = bounce" is unambiguous, so spaces around '=' are let through.
        tokens = _SPACED_EQUALS.sub("=", entry).split()
        if not tokens:
            where = "at the end" if index == len(entries) else f"at position {index}"
            problems.append(f"has an empty entry {where} (a stray comma?)")
            continue
        address, flags = tokens[0], tokens[1:]
        label = f"entry {entry.strip()!r}"
        problems_before = len(problems)
        valid = True
        path: str | None = None
        try:
            if address.startswith(listenfiles.UNIX_PREFIX):
                path = listenfiles.unix_path(address.removeprefix(listenfiles.UNIX_PREFIX), base)
                host, port = "unix", 0
            else:
                host, port = parse_address(address)
        except ValueError as exc:
            valid = False
            message = str(exc)
            if index > 1 and re.fullmatch(r"[0-9.]+", address):
                # Most likely the tail of "delay=1,5": the comma split the entry.
                message = (
                    "is not an address; a comma starts a new listener, so write a delay"
                    " range as delay=A-B"
                )
            problems.append(f"{label}: {message}")
            host, port = "", 0
        mode: Mode | None = None
        delay: Delay | None = None
        listener_name: str | None = None
        proxy = False
        starttls = True
        paths: dict[str, str] = {}
        mode_bits: int | None = None
        seen: set[str] = set()
        for flag in flags:
            name, equals, flag_value = flag.partition("=")
            if not equals:
                problems.append(f"{label}: {flag!r} is not a flag; flags look like mode=bounce")
                continue
            if name not in _FLAGS:
                problems.append(
                    f"{label}: unknown flag {name!r}; the flags are mode=MODE, delay=N or A-B,"
                    " name=NAME, proxy=yes|no, cert=PATH, key=PATH, socket_mode=MODE and"
                    " starttls=yes|no"
                )
                continue
            if name in seen:
                problems.append(f"{label}: {name} is given twice")
                continue
            seen.add(name)
            try:
                if name == "mode":
                    mode = parse_mode(flag_value)
                elif name == "name":
                    listener_name = _listener_name(flag_value)
                elif name == "proxy":
                    proxy = _yes_no(flag_value)
                elif name == "starttls":
                    starttls = _yes_no(flag_value)
                elif name == "cert":
                    paths[name] = listenfiles.cert_file(flag_value, base)
                elif name == "key":
                    paths[name] = listenfiles.key_file(flag_value, base)
                elif name == "socket_mode":
                    mode_bits = listenfiles.socket_mode(flag_value)
                else:
                    delay = parse_delay(flag_value, allow_comma=False)
            except ValueError as exc:
                problems.append(f"{label}: {name} {exc}")
        if ("cert" in seen) != ("key" in seen):
            problems.append(f"{label}: cert= and key= go together; give both")
        if "socket_mode" in seen and path is None and valid:
            problems.append(f"{label}: socket_mode= is for unix: listeners only")
        if "starttls" in seen and tls:
            problems.append(f"{label}: starttls= is for plain listeners (this one is TLS already)")
        # Only a wholly valid entry counts: a bad one already has its message,
        # and must not draw a second one (a clash) on top.
        if valid and len(problems) == problems_before:
            listeners.append(
                Listener(
                    host,
                    port,
                    tls,
                    mode,
                    delay,
                    lmtp=lmtp,
                    name=listener_name,
                    proxy=proxy,
                    cert=paths.get("cert"),
                    key=paths.get("key"),
                    path=path,
                    socket_mode=mode_bits,
                    starttls=starttls,
                )
            )
    if problems:
        raise ListenError(problems, tuple(listeners))
    return tuple(listeners)


def _listener_name(text: str) -> str:
    if not _NAME.fullmatch(text):
        raise ValueError(f"must be 1 to 64 letters, digits, '_', '.' or '-', not {text!r}")
    return text


def _yes_no(text: str) -> bool:
    if text not in ("yes", "no"):
        raise ValueError(f"must be yes or no, not {text!r}")
    return text == "yes"
