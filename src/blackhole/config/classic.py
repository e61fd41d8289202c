"""Loader for the classic ``key = value`` blackhole.conf (Blackhole 2.1.19 syntax).

The line syntax is config/lines.py's, the values are read by config/values.py,
config/files.py (paths) and config/listen.py (listeners); this module ties
them together and checks the keys against each other. Every problem in the
file is collected and reported at once, each as ``FILE:LINE: message``, in
one ``ConfigError``.

Checks that need the host the server runs on (does the user exist, can the
TLS files be loaded together) are ``-t``'s and start-up's: see
config/preflight.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from blackhole.config import files, values
from blackhole.config.lines import Problems, Setting, read_settings
from blackhole.config.listen import (
    ListenError,
    is_loopback,
    parse_address,
    parse_delay,
    parse_listen,
    parse_mode,
)
from blackhole.config.model import Config, Listener
from blackhole.config.stateurl import state_url
from blackhole.errors import ConfigError
from blackhole.net import host_port
from blackhole.regular import read_text_file
from blackhole.rules.addresses import parse_conventions
from blackhole.rules.parse import RulesError, parse_file


def _parsers(base: Path) -> dict[str, Callable[[str], Any]]:
    """The parser of every key; ``base`` is where relative paths start.

    Values are typed per key, so the registry as a whole can only say Any; each
    parser's own signature is checked, and tests check the Config they build.
    """
    return {
        "listen": lambda text: parse_listen(text, tls=False, base=base),
        "tls_listen": lambda text: parse_listen(text, tls=True, base=base),
        "lmtp_listen": lambda text: parse_listen(text, lmtp=True, base=base),
        "user": values.account_name,
        "group": values.account_name,
        "pidfile": lambda text: files.writable_path(text, base),
        "timeout": values.timeout,
        "tls_cert": lambda text: files.pem_file(text, base, files.CERTIFICATE, "a PEM certificate"),
        "tls_key": lambda text: files.pem_file(text, base, files.PRIVATE_KEY, "a PEM private key"),
        "tls_dhparams": lambda text: files.pem_file(
            text, base, files.DH_PARAMETERS, "PEM DH parameters"
        ),
        "delay": parse_delay,
        "mode": parse_mode,
        "random_accept": values.share,
        "max_message_size": values.max_message_size,
        "dynamic_switch": values.boolean,
        "workers": values.workers,
        "mailname": values.mailname,
        "max_recipients": values.max_recipients,
        "junk_command_limit": values.junk_command_limit,
        "forbidden_commands": values.forbidden_commands,
        "seed": values.integer,
        "auth_required": values.boolean,
        "auth_tls_only": values.boolean,
        "log_file": lambda text: files.writable_path(text, base),
        "log_format": values.log_format,
        "tls_handshake_timeout": values.tls_handshake_timeout,
        "grace_period": values.grace_period,
        "heartbeat_interval": values.heartbeat_interval,
        "control_listen": parse_address,
        "control_token": values.token,
        "control_token_file": lambda text: files.readable_file(text, base),
        # Parsed with the config, so that -t, start-up and SIGHUP all refuse a
        # broken rules file the same way (a reload keeps the old config).
        "rules": lambda text: parse_file(files.resolve(text, base)),
        "address_rules": parse_conventions,
        "stats_interval": values.stats_interval,
        "event_log": lambda text: text if text == "-" else files.writable_path(text, base),
        "record": values.record,
        "state_url": state_url,
    }


def parse_config(
    text: str, filename: str = "<config>", base: str | os.PathLike[str] | None = None
) -> Config:
    """Build a ``Config`` from the text of a classic config file.

    ``filename`` is only used in messages; relative paths in the file are
    taken from ``base`` (default: the current directory). Raises
    ``ConfigError`` with every problem found. Listening defaults apply when
    the file has neither ``listen`` nor ``tls_listen``: ``Config``'s loopback
    ports 2525 and 4650, with a self-signed certificate (``generated_cert``)
    unless ``tls_cert`` is set.
    """
    start = Path(base) if base is not None else Path.cwd()
    problems = Problems(filename)
    settings = read_settings(text, problems)
    parsers = _parsers(start)
    parsed: dict[str, Any] = {}
    in_rules: list[str] = []
    for key, setting in settings.items():
        try:
            parsed[key] = parsers[key](setting.value)
        except ListenError as exc:
            for problem in exc.problems:
                problems.add(setting.line, f"{key} {problem}")
            # Still checked for clashes below; nothing else uses them, since
            # any problem stops the load.
            parsed[key] = exc.listeners
        except RulesError as exc:
            # Each problem already names the rules file and line (or rule).
            in_rules.extend(exc.problems)
        except ValueError as exc:
            problems.add(setting.line, f"{key} {exc}")

    _check_tls(settings, parsed, problems)
    _check_control(settings, parsed, problems)
    _check_listener_clashes(settings, parsed, problems)
    if problems or in_rules:
        raise ConfigError(problems.messages() + in_rules)

    changes = {key: value for key, value in parsed.items() if key not in _LISTEN_KEYS}
    if any(key in settings for key in _LISTEN_KEYS):
        changes["listeners"] = sum((_listeners(parsed.get(key)) for key in _LISTEN_KEYS), ())
    else:
        changes["generated_cert"] = "tls_cert" not in settings
    return replace(Config(), base_dir=str(start.absolute()), **changes)


_LISTEN_KEYS = ("listen", "tls_listen", "lmtp_listen")


def _listeners(value: object) -> tuple[Listener, ...]:
    return value if isinstance(value, tuple) else ()


def _check_tls(settings: dict[str, Setting], parsed: dict[str, Any], problems: Problems) -> None:
    cert, key = settings.get("tls_cert"), settings.get("tls_key")
    if cert and not key:
        problems.add(cert.line, "tls_cert is set but tls_key is not; TLS needs both")
    if key and not cert:
        problems.add(key.line, "tls_key is set but tls_cert is not; TLS needs both")
    if not cert:
        # A tls_listen entry with cert=/key= has a certificate of its own.
        own = all(listener.cert is not None for listener in _listeners(parsed.get("tls_listen")))
        if "tls_listen" in settings and not own:
            problems.add(
                settings["tls_listen"].line,
                "tls_listen needs tls_cert and tls_key (or cert= and key= on each entry):"
                " a TLS listener cannot start without a certificate",
            )
        if "tls_dhparams" in settings:
            problems.add(
                settings["tls_dhparams"].line,
                "tls_dhparams is set but tls_cert is not; DH parameters are only used with TLS",
            )


def _check_control(
    settings: dict[str, Setting], parsed: dict[str, Any], problems: Problems
) -> None:
    if "control_token" in settings and "control_token_file" in settings:
        problems.add(
            settings["control_token_file"].line,
            "control_token_file and control_token are both set; choose one",
        )
    address = parsed.get("control_listen")
    tokened = "control_token" in settings or "control_token_file" in settings
    if isinstance(address, tuple) and not tokened and not is_loopback(address[0]):
        # OBSERVE.md: anyone who reaches the port could change the rules.
        problems.add(
            settings["control_listen"].line,
            f"control_listen {address[0]} is not a loopback address: set control_token"
            " or control_token_file, or listen on 127.0.0.1",
        )


_WILDCARDS = frozenset(("0.0.0.0", "::"))


def _check_listener_clashes(
    settings: dict[str, Setting], parsed: dict[str, Any], problems: Problems
) -> None:
    # Two listeners on one address and port cannot both bind; say so now rather
    # than failing with "address in use" at start-up.
    seen: dict[tuple[str, int | str], str] = {}
    for key in _LISTEN_KEYS:
        if key not in settings:
            continue
        line = settings[key].line
        for listener in _listeners(parsed.get(key)):
            if listener.port == 0 and listener.path is None:
                continue  # each port-0 listener gets its own port from the kernel
            where: tuple[str, int | str] = (listener.host, listener.path or listener.port)
            address = listener.where
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
    control = parsed.get("control_listen")
    if isinstance(control, tuple) and (taken := _bound_with(control, seen)) is not None:
        host, port = control
        problems.add(
            settings["control_listen"].line,
            f"control_listen {host_port(host, port)} is already in {taken} on line"
            f" {settings[taken].line}; the control API needs a port of its own",
        )


def _bound_with(address: tuple[str, int], seen: dict[tuple[str, int | str], str]) -> str | None:
    """The listen key of a listener on ``address``'s port that takes ``address``
    too: the same host, or a wildcard of its family on either side (each
    family binds apart: IPV6_V6ONLY)."""
    host, port = address
    for (other, other_port), key in seen.items():
        if port == 0 or other_port != port or (":" in host) != (":" in other):
            continue
        if other == host or other in _WILDCARDS or host in _WILDCARDS:
            return key
    return None


def load_config(path: str | os.PathLike[str], base: str | os.PathLike[str] | None = None) -> Config:
    """Read and parse a classic config file.

    ``base`` is the directory relative paths start from, the file's own path
    included (default: the current directory, where Blackhole was started).
    ``Config.config_file`` and ``Config.base_dir`` record both as absolute
    paths, so that a reload finds the same files from anywhere. Raises
    ``ConfigError`` when the file cannot be read or is invalid.
    """
    start = Path(base) if base is not None else Path.cwd()
    name = str(files.resolve(os.fspath(path), start))
    try:
        raw = read_text_file(name)
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read the config file: {exc.strerror or exc}") from None
    try:
        # utf-8-sig: a byte-order mark left by a Windows editor is not part of line 1.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{name}:{line}: the file is not UTF-8 text") from None
    config = parse_config(text, filename=name, base=start)
    return replace(config, config_file=name)


def reload_config(current: Config) -> Config:
    """Re-read ``current.config_file`` (for SIGHUP), keeping what the command line set.

    Relative paths are taken from the directory of the first load, not from
    wherever the process is now (a daemon is in ``/``). With no config file
    there is nothing to re-read and ``current`` comes back. Raises
    ``ConfigError`` if the file is now invalid; the caller keeps running on
    ``current``.
    """
    if current.config_file is None:
        return current
    return replace(
        load_config(current.config_file, base=current.base_dir),
        debug=current.debug,
        quiet=current.quiet,
        background=current.background,
        less_secure=current.less_secure,
    )
