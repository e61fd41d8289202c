"""Logging set-up: one handler on the root logger, text or JSON lines.

- Destination: standard error, or ``config.log_file`` (appended to).
- Level: DEBUG with ``config.debug`` (``-d``), WARNING with ``config.quiet``
  (``-q``: warnings and errors only), else INFO. Debug wins if both are set.
- Format: ``config.log_format`` is ``"text"`` (one readable line per record)
  or ``"json"`` (one JSON object per line, with any ``extra=`` fields).
- ``worker``: a worker process passes its number, which then appears in every
  line, so that the interleaved output of several workers can be told apart.

Calling ``setup_logging`` again replaces the handler it installed before (and
only that one), so a worker can re-run it after fork and a reload can re-run it
with a new config. That is also how the log file is reopened on SIGHUP, after
logrotate has moved it away: the supervisor and every worker call it again
(each process has its own handle, opened in append mode, so lines from several
processes never overwrite each other). The new file is opened before the old
handler is closed: if it cannot be opened, ``ConfigError`` is raised and the
old handler keeps logging.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from blackhole.config.model import Config
from blackhole.errors import ConfigError

# The name of the handler setup_logging installs, so it can find and replace
# its own handler without touching anyone else's (pytest's, for one).
HANDLER_NAME = "blackhole"

# Attributes every LogRecord has; anything else on a record came from extra=.
_RECORD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
) | {"message", "asctime", "taskName"}


def _timestamp(created: float) -> str:
    # UTC with an explicit offset: logs from several hosts sort and compare.
    return datetime.fromtimestamp(created, tz=UTC).isoformat(timespec="milliseconds")


class TextFormatter(logging.Formatter):
    """``2024-05-01T12:00:00.123+00:00 INFO [worker 2] blackhole.server: message``."""

    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        self._prefix = "" if worker is None else f"[worker {worker}] "

    def format(self, record: logging.LogRecord) -> str:
        text = (
            f"{_timestamp(record.created)} {record.levelname} {self._prefix}"
            f"{record.name}: {record.getMessage()}"
        )
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, worker, extras."""

    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        self._worker = worker

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self._worker is not None:
            entry["worker"] = self._worker
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: an extra= value that JSON cannot hold must not lose the line.
        return json.dumps(entry, default=str, ensure_ascii=False)


def _level(config: Config) -> int:
    if config.debug:
        return logging.DEBUG
    if config.quiet:
        return logging.WARNING
    return logging.INFO


def _handler(config: Config) -> logging.Handler:
    if config.log_file is None:
        return logging.StreamHandler(sys.stderr)
    try:
        return logging.FileHandler(config.log_file, mode="a", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"log_file {config.log_file!r} cannot be opened: {exc.strerror or exc}"
        ) from None


def setup_logging(config: Config, worker: int | None = None) -> None:
    """Send every log record at or above the configured level to one place.

    Raises ``ConfigError`` if ``config.log_file`` cannot be opened.
    """
    handler = _handler(config)
    handler.set_name(HANDLER_NAME)
    formatter = JsonFormatter(worker) if config.log_format == "json" else TextFormatter(worker)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(_level(config))
    # Python warnings (a library's DeprecationWarning, say) would otherwise be
    # printed raw on stderr, outside the log format and the log file.
    logging.captureWarnings(True)
