"""Loader for the classic ``key = value`` blackhole.conf (Blackhole 2.1.19 syntax).

The format, as the classic server read it and as existing files use it:

- one ``key = value`` per line; blank lines are fine;
- ``#`` starts a comment, at the start of a line or after a value;
- a value wrapped in single or double quotes loses the quotes (and may then
  contain ``#``);
- keys are lowercase and case-sensitive.

Where the classic loader was lax, this one is strict, because a sink that
silently runs with a setting you did not mean makes a load test lie:
unknown keys, a key given twice, a line without ``=`` and empty values are
errors. Every problem in the file is collected and reported at once, each as
``FILE:LINE: message``, in one ``ConfigError``.

File-system checks that a config test should catch (TLS files readable, the
pid file's and log file's directory present) are done here too; checks that
need privileges or the network (does the user exist, can the port be bound)
are left to the supervisor and the server.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from blackhole.config.listen import ListenError, is_hostname, parse_delay, parse_listen, parse_mode
from blackhole.config.model import (
    DEFAULT_TIMEOUT,
    MAX_TIMEOUT,
    MAX_TLS_HANDSHAKE_TIMEOUT,
    MIN_TLS_HANDSHAKE_TIMEOUT,
    Config,
    Listener,
)
from blackhole.config.options import unknown_key_message
from blackhole.errors import ConfigError
from blackhole.net import host_port

MAX_WORKERS = 64  # more processes than this is a typo, not a plan
MAX_GRACE_PERIOD = 3600.0
MAX_HEARTBEAT_INTERVAL = 60.0
# RFC 5321 section 4.5.3.1.8: a server must accept at least 100 recipients.
MIN_RECIPIENTS = 100
# Only the start of a PEM file is read to check what it holds.
_PEM_SNIFF_BYTES = 1 << 20

_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})
_INTEGER = re.compile(r"[+-]?[0-9]+")


# --- value parsers -----------------------------------------------------------
# Each takes the unquoted value and returns the typed value, or raises
# ValueError with a phrase that reads after the key name:
# "timeout" + " must be at most 180 seconds, not 500".


def _integer(text: str) -> int:
    if not _INTEGER.fullmatch(text):
        raise ValueError(f"must be a whole number, not {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError(f"must be a number of seconds, not {text!r}") from None
    if not math.isfinite(seconds):
        raise ValueError(f"must be a finite number of seconds, not {text!r}")
    if seconds < 0:
        raise ValueError(f"cannot be negative: {text!r}")
    return seconds


def _timeout(text: str) -> float:
    seconds = _seconds(text)
    if seconds == 0:
        # Classic bug: timeout = 0 closed every connection at once. 0 has only
        # ever been written to mean "no particular timeout", so it gets the default.
        return DEFAULT_TIMEOUT
    if seconds > MAX_TIMEOUT:
        raise ValueError(f"must be at most {MAX_TIMEOUT:g} seconds, not {text}")
    return seconds


def _tls_handshake_timeout(text: str) -> float:
    seconds = _seconds(text)
    if not MIN_TLS_HANDSHAKE_TIMEOUT <= seconds <= MAX_TLS_HANDSHAKE_TIMEOUT:
        raise ValueError(
            f"must be {MIN_TLS_HANDSHAKE_TIMEOUT:g} to {MAX_TLS_HANDSHAKE_TIMEOUT:g} seconds,"
            f" not {text}"
        )
    return seconds


def _grace_period(text: str) -> float:
    seconds = _seconds(text)
    if seconds > MAX_GRACE_PERIOD:
        raise ValueError(f"must be at most {MAX_GRACE_PERIOD:g} seconds, not {text}")
    return seconds


def _heartbeat_interval(text: str) -> float:
    seconds = _seconds(text)
    if not 0 < seconds <= MAX_HEARTBEAT_INTERVAL:
        raise ValueError(
            f"must be more than 0 and at most {MAX_HEARTBEAT_INTERVAL:g} seconds, not {text}"
        )
    return seconds


def _boolean(text: str) -> bool:
    word = text.lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"must be true or false (or yes/no, on/off, 1/0), not {text!r}")


def _max_message_size(text: str) -> int:
    size = _integer(text)
    if size < 1:
        raise ValueError(f"must be 1 byte or more, not {size}")
    return size


def _max_recipients(text: str) -> int:
    count = _integer(text)
    if count < MIN_RECIPIENTS:
        raise ValueError(
            f"must be {MIN_RECIPIENTS} or more (RFC 5321 section 4.5.3.1.8), not {count}"
        )
    return count


def _workers(text: str) -> int:
    count = _integer(text)
    if not 1 <= count <= MAX_WORKERS:
        raise ValueError(f"must be from 1 to {MAX_WORKERS}, not {count}")
    return count


def _account_name(text: str) -> str:
    # Whether the user or group exists is the supervisor's check: it may only be
    # true on the host where the server runs, not where the config is tested.
    if any(ch.isspace() for ch in text):
        raise ValueError(f"must be a single name without spaces, not {text!r}")
    return text


def _is_address_literal(text: str) -> bool:
    # RFC 5321 section 4.1.3: "[192.0.2.1]" or "[IPv6:2001:db8::1]".
    if not (text.startswith("[") and text.endswith("]")):
        return False
    inner = text[1:-1]
    try:
        if inner[:5].lower() == "ipv6:":
            ipaddress.IPv6Address(inner[5:])
        else:
            ipaddress.IPv4Address(inner)
    except ValueError:
        return False
    return True


def _mailname(text: str) -> str:
    # The name goes into the 220 greeting and the EHLO reply (RFC 5321 section
    # 4.1.1.1), so it must be a domain or an address literal, never free text.
    if is_hostname(text) or _is_address_literal(text):
        return text
    raise ValueError(f"must be a host name such as mx.example.test, not {text!r}")


def _log_format(text: str) -> str:
    word = text.lower()
    if word not in {"text", "json"}:
        raise ValueError(f"must be text or json, not {text!r}")
    return word


def _absolute(text: str) -> str:
    # Relative paths are taken from the directory blackhole was started in, as
    # the classic server did, and fixed at load time so that a daemon that
    # changes directory, or a SIGHUP reload, still finds the same file.
    return str(Path(text).absolute())


def _pem_file(marker: str, what: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        path = Path(text)
        try:
            with path.open("rb") as handle:
                head = handle.read(_PEM_SNIFF_BYTES)
        except FileNotFoundError:
            raise ValueError(f"file {text!r} does not exist") from None
        except IsADirectoryError:
            raise ValueError(f"{text!r} is a directory, not a file") from None
        except OSError as exc:
            raise ValueError(f"file {text!r} cannot be read: {exc.strerror or exc}") from None
        if marker.encode() not in head:
            raise ValueError(f"file {text!r} does not look like {what} (no {marker!r} line)")
        return _absolute(text)

    return parse


def _writable_path(text: str) -> str:
    path = Path(text)
    if path.is_dir():
        raise ValueError(f"{text!r} is a directory; give a file name inside it")
    parent = path.absolute().parent
    if not parent.is_dir():
        raise ValueError(f"directory {str(parent)!r} does not exist")
    return _absolute(text)


# Values are typed per key, so the registry as a whole can only say Any; each
# parser's own signature is checked, and tests check the Config they build.
_PARSERS: dict[str, Callable[[str], Any]] = {
    "listen": lambda text: parse_listen(text, tls=False),
    "tls_listen": lambda text: parse_listen(text, tls=True),
    "user": _account_name,
    "group": _account_name,
    "pidfile": _writable_path,
    "timeout": _timeout,
    "tls_cert": _pem_file("-----BEGIN CERTIFICATE-----", "a PEM certificate"),
    "tls_key": _pem_file("PRIVATE KEY-----", "a PEM private key"),
    "tls_dhparams": _pem_file("-----BEGIN DH PARAMETERS-----", "PEM DH parameters"),
    "delay": parse_delay,
    "mode": parse_mode,
    "max_message_size": _max_message_size,
    "dynamic_switch": _boolean,
    "workers": _workers,
    "mailname": _mailname,
    "max_recipients": _max_recipients,
    "seed": _integer,
    "auth_required": _boolean,
    "auth_tls_only": _boolean,
    "log_file": _writable_path,
    "log_format": _log_format,
    "tls_handshake_timeout": _tls_handshake_timeout,
    "grace_period": _grace_period,
    "heartbeat_interval": _heartbeat_interval,
}


# --- the file ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Setting:
    line: int
    value: str


class _Problems:
    """Problems with their line numbers, reported sorted by line."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self._items: list[tuple[int, str]] = []

    def add(self, line: int, message: str) -> None:
        self._items.append((line, message))

    def __bool__(self) -> bool:
        return bool(self._items)

    def messages(self) -> list[str]:
        # By line only: the sort is stable, so problems on one line keep the
        # order they were found in (the entries of a listen line in file order).
        ordered = sorted(self._items, key=lambda item: item[0])
        return [f"{self.filename}:{line}: {message}" for line, message in ordered]


def _split_line(text: str) -> tuple[str, str] | str | None:
    """One line -> ``(key, value)``, ``None`` for nothing, or a problem message."""
    stripped = text.strip()
    if not stripped or stripped.startswith("#"):
        return None
    key, equals, rest = stripped.partition("=")
    if not equals or "#" in key:
        content = stripped.split("#", 1)[0].strip()
        return f"expected 'key = value', found {content!r}"
    key, rest = key.strip(), rest.strip()
    if not key:
        return "there is no key before '='"
    if rest[:1] in {'"', "'"}:
        quote = rest[0]
        close = rest.find(quote, 1)
        if close == -1:
            return f"{key} has an opening {quote} without a closing one"
        value, after = rest[1:close], rest[close + 1 :].strip()
        if after and not after.startswith("#"):
            return f"{key} has text after its closing quote: {after!r}"
        value = value.strip()
    else:
        value = rest.split("#", 1)[0].strip()
    return key, value


def parse_config(text: str, filename: str = "<config>") -> Config:
    """Build a ``Config`` from the text of a classic config file.

    ``filename`` is only used in messages. Raises ``ConfigError`` with every
    problem found. Listening defaults apply when the file has neither
    ``listen`` nor ``tls_listen``: ``Config``'s loopback ports 2525 and 4650,
    with a self-signed certificate (``generated_cert``) unless ``tls_cert`` is set.
    """
    problems = _Problems(filename)
    settings: dict[str, _Setting] = {}
    for number, line in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        split = _split_line(line)
        if split is None:
            continue
        if isinstance(split, str):
            problems.add(number, split)
            continue
        key, value = split
        if key not in _PARSERS:
            problems.add(number, unknown_key_message(key))
        elif key in settings:
            first = settings[key].line
            problems.add(number, f"{key} is set twice, on lines {first} and {number}; keep one")
        elif not value:
            problems.add(number, f"{key} has no value (remove the line to use the default)")
        else:
            settings[key] = _Setting(number, value)

    values: dict[str, Any] = {}
    for key, setting in settings.items():
        try:
            values[key] = _PARSERS[key](setting.value)
        except ListenError as exc:
            for problem in exc.problems:
                problems.add(setting.line, f"{key} {problem}")
            # Still checked for clashes below; nothing else uses them, since
            # any problem stops the load.
            values[key] = exc.listeners
        except ValueError as exc:
            problems.add(setting.line, f"{key} {exc}")

    _check_tls(settings, problems)
    _check_listener_clashes(settings, values, problems)
    if problems:
        raise ConfigError(problems.messages())

    changes = {key: value for key, value in values.items() if key not in {"listen", "tls_listen"}}
    if "listen" in settings or "tls_listen" in settings:
        plain = _listeners(values.get("listen"))
        secure = _listeners(values.get("tls_listen"))
        changes["listeners"] = plain + secure
    else:
        changes["generated_cert"] = "tls_cert" not in settings
    return replace(Config(), **changes)


def _listeners(value: object) -> tuple[Listener, ...]:
    return value if isinstance(value, tuple) else ()


def _check_tls(settings: dict[str, _Setting], problems: _Problems) -> None:
    cert, key = settings.get("tls_cert"), settings.get("tls_key")
    if cert and not key:
        problems.add(cert.line, "tls_cert is set but tls_key is not; TLS needs both")
    if key and not cert:
        problems.add(key.line, "tls_key is set but tls_cert is not; TLS needs both")
    if not cert:
        if "tls_listen" in settings:
            problems.add(
                settings["tls_listen"].line,
                "tls_listen needs tls_cert and tls_key: a TLS listener cannot start without"
                " a certificate",
            )
        if "tls_dhparams" in settings:
            problems.add(
                settings["tls_dhparams"].line,
                "tls_dhparams is set but tls_cert is not; DH parameters are only used with TLS",
            )


def _check_listener_clashes(
    settings: dict[str, _Setting], values: dict[str, Any], problems: _Problems
) -> None:
    # Two listeners on one address and port cannot both bind; say so now rather
    # than failing with "address in use" at start-up.
    seen: dict[tuple[str, int], str] = {}
    for key in ("listen", "tls_listen"):
        if key not in settings:
            continue
        line = settings[key].line
        for listener in _listeners(values.get(key)):
            if listener.port == 0:
                continue  # each port-0 listener gets its own port from the kernel
            where = (listener.host, listener.port)
            address = _show(listener)
            if where not in seen:
                seen[where] = key
            elif seen[where] == key:
                problems.add(line, f"{key} lists {address} twice")
            else:
                first = settings[seen[where]].line
                problems.add(
                    line,
                    f"{key} repeats {address}, already in {seen[where]} on line {first};"
                    " an address and port can have only one listener",
                )


def _show(listener: Listener) -> str:
    return host_port(listener.host, listener.port)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and parse a classic config file; ``Config.config_file`` records its path.

    Raises ``ConfigError`` when the file cannot be read or is invalid.
    """
    name = os.fspath(path)
    try:
        raw = Path(name).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read the config file: {exc.strerror or exc}") from None
    try:
        # utf-8-sig: a byte-order mark left by a Windows editor is not part of line 1.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{name}:{line}: the file is not UTF-8 text") from None
    config = parse_config(text, filename=name)
    return replace(config, config_file=str(Path(name).absolute()))


def reload_config(current: Config) -> Config:
    """Re-read ``current.config_file`` (for SIGHUP), keeping what the command line set.

    With no config file there is nothing to re-read and ``current`` comes back.
    Raises ``ConfigError`` if the file is now invalid; the caller keeps running
    on ``current``.
    """
    if current.config_file is None:
        return current
    return replace(
        load_config(current.config_file),
        debug=current.debug,
        quiet=current.quiet,
        background=current.background,
        less_secure=current.less_secure,
    )
