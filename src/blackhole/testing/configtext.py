"""The config file a ``Blackhole`` runs with: the user's keys, and the harness's own.

Keyword arguments are the config file's keys (``mode="bounce"``,
``auth_required=True``, ``forbidden_commands=["VRFY", "EXPN"]``); with
``config=PATH`` the file's keys come first and keyword arguments replace
them. The harness owns where the server listens (ephemeral ports on
127.0.0.1, the control API included) and how it starts, so those keys are
refused with a clear message rather than silently ignored. The text is
checked by the server's own loader (``parse_config``) before any process
starts, so a misspelt key fails at once with the loader's did-you-mean.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from blackhole.config.lines import Problems, read_settings
from blackhole.config.options import OPTION_NAMES, unknown_key_message
from blackhole.errors import ConfigError

LOOPBACK_ANY_PORT = "127.0.0.1:0"

_PORTS = "ephemeral ports on 127.0.0.1: read bh.port, bh.smtps_port, bh.lmtp_port instead"
_CHILD = "the server is the test's child, in the foreground"
# Keys the harness sets itself, and why: the listeners and the control API
# must be on ephemeral loopback ports it can find, the server must stay in the
# foreground as the test's child, and its log is its output, where the
# harness reads its start-up lines (and StartError shows the rest).
OWNED = {
    "listen": _PORTS,
    "tls_listen": _PORTS,
    "lmtp_listen": _PORTS,
    "control_listen": _PORTS,
    "control_token": "the control API is the harness's, on loopback",
    "control_token_file": "the control API is the harness's, on loopback",
    "pidfile": _CHILD,
    "user": _CHILD,
    "group": _CHILD,
    "log_file": "the server logs to its output, which the harness reads",
}


def _value(key: str, value: object) -> str:
    """One value as the classic file writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str | os.PathLike):
        text = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
    elif isinstance(value, Iterable):
        text = ", ".join(str(item) for item in value)
    else:
        raise ConfigError(f"option {key}: {value!r} is no config value (a string, number or list)")
    if "\n" in text or "\r" in text:
        raise ConfigError(f"option {key}: a value is one line")
    return text


def _file_settings(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror or exc}") from None
    problems = Problems(str(path))
    settings = read_settings(text, problems)
    if problems:
        raise ConfigError("\n".join(problems.messages()))
    return {key: setting.value for key, setting in settings.items()}


def settings_for(
    options: Mapping[str, Any],
    config: str | os.PathLike[str] | None,
    *,
    tls: tuple[Path, Path] | None,
    lmtp: bool,
    record: int,
) -> dict[str, str]:
    """The settings, by key; raises ``ConfigError`` for a key the harness cannot take.

    ``tls`` is the generated (certificate, key) pair, used unless the
    options name their own ``tls_cert`` and ``tls_key``.
    """
    settings: dict[str, str] = {}
    if config is not None:
        # The file's listeners and the like give way to the harness's own.
        from_file = _file_settings(Path(config))
        settings.update((key, value) for key, value in from_file.items() if key not in OWNED)
    for key, value in options.items():
        if key not in OPTION_NAMES:
            raise ConfigError(unknown_key_message(key))
        settings[key] = _value(key, value)
    taken = sorted(OWNED.keys() & settings.keys())
    if taken:
        raise ConfigError("\n".join(f"Blackhole sets {key} itself ({OWNED[key]})" for key in taken))
    settings.setdefault("mailname", "blackhole.test")
    # Sessions a test left open must not hold its teardown for the default 30 s.
    settings.setdefault("grace_period", "1")
    settings["listen"] = LOOPBACK_ANY_PORT
    if tls is not None:
        settings["tls_listen"] = LOOPBACK_ANY_PORT
        if "tls_cert" not in settings:
            settings["tls_cert"], settings["tls_key"] = str(tls[0]), str(tls[1])
    if lmtp:
        settings["lmtp_listen"] = LOOPBACK_ANY_PORT
    settings["control_listen"] = LOOPBACK_ANY_PORT
    # ``record`` arrives with the message records (GET /messages); a server
    # that does not know the key yet records nothing, and says so by its
    # empty list rather than refusing to start.
    if "record" in OPTION_NAMES:
        settings.setdefault("record", str(record))
    return settings


def _quoted(value: str) -> str:
    """Quote a value the line syntax would otherwise cut at ``#`` or unquote."""
    if "#" not in value and value[:1] not in {'"', "'"}:
        return value
    return f"'{value}'" if '"' in value else f'"{value}"'


def render(settings: Mapping[str, str]) -> str:
    return "".join(f"{key} = {_quoted(value)}\n" for key, value in settings.items())
