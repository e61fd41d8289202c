"""Value parsers for the config keys that are not paths or listeners.

Each takes the unquoted value and returns the typed value, or raises
``ValueError`` with a phrase that reads after the key name:
"timeout" + " must be at most 180 seconds, not 500".
"""

from __future__ import annotations

import math
import re

from blackhole.config.domain import mailname_problem
from blackhole.config.model import (
    DEFAULT_TIMEOUT,
    MAX_TIMEOUT,
    MAX_TLS_HANDSHAKE_TIMEOUT,
    MIN_TLS_HANDSHAKE_TIMEOUT,
)

MAX_WORKERS = 64  # more processes than this is a typo, not a plan
MAX_GRACE_PERIOD = 3600.0
MAX_HEARTBEAT_INTERVAL = 60.0
MAX_STATS_INTERVAL = 86400.0
MAX_RECORD = 100_000  # records of a few KiB each: a bounded, modest memory
MAX_MESSAGE_SIZE = 10**20 - 1
# RFC 5321 section 4.5.3.1.8: a server must accept at least 100 recipients.
MIN_RECIPIENTS = 100

_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})
_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)


def integer(text: str) -> int:
    if not _INTEGER.fullmatch(text):
        raise ValueError(f"must be a whole number, not {text!r}")
    return int(text)


def _ascii_float(text: str) -> float:
    """float() of ASCII text only: it also reads other scripts' digits ("５")."""
    if not text.isascii():
        raise ValueError(text)
    return float(text)


def seconds(text: str) -> float:
    try:
        value = _ascii_float(text)
    except ValueError:
        raise ValueError(f"must be a number of seconds, not {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"must be a finite number of seconds, not {text!r}")
    if value < 0:
        raise ValueError(f"cannot be negative: {text!r}")
    return value


def timeout(text: str) -> float:
    value = seconds(text)
    if value == 0:
        # Classic bug: timeout = 0 closed every connection at once. 0 has only
        # ever been written to mean "no particular timeout", so it gets the default.
        return DEFAULT_TIMEOUT
    if value > MAX_TIMEOUT:
        raise ValueError(f"must be at most {MAX_TIMEOUT:g} seconds, not {text}")
    return value


def tls_handshake_timeout(text: str) -> float:
    value = seconds(text)
    if not MIN_TLS_HANDSHAKE_TIMEOUT <= value <= MAX_TLS_HANDSHAKE_TIMEOUT:
        raise ValueError(
            f"must be {MIN_TLS_HANDSHAKE_TIMEOUT:g} to {MAX_TLS_HANDSHAKE_TIMEOUT:g} seconds,"
            f" not {text}"
        )
    return value


def grace_period(text: str) -> float:
    value = seconds(text)
    if value > MAX_GRACE_PERIOD:
        raise ValueError(f"must be at most {MAX_GRACE_PERIOD:g} seconds, not {text}")
    return value


def heartbeat_interval(text: str) -> float:
    value = seconds(text)
    if not 0 < value <= MAX_HEARTBEAT_INTERVAL:
        raise ValueError(
            f"must be more than 0 and at most {MAX_HEARTBEAT_INTERVAL:g} seconds, not {text}"
        )
    return value


def stats_interval(text: str) -> float:
    value = seconds(text)
    if value > MAX_STATS_INTERVAL:
        raise ValueError(f"must be 0 (off) to {MAX_STATS_INTERVAL:g} seconds, not {text}")
    return value


def record(text: str) -> int:
    value = integer(text)
    if not 0 <= value <= MAX_RECORD:
        raise ValueError(f"must be 0 (off) to {MAX_RECORD}, not {text}")
    return value


def boolean(text: str) -> bool:
    word = text.lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"must be true or false (or yes/no, on/off, 1/0), not {text!r}")


def share(text: str) -> float:
    """A fraction from 0.0 to 1.0 (``random_accept``)."""
    try:
        value = _ascii_float(text)
    except ValueError:
        raise ValueError(f"must be a number from 0.0 to 1.0, not {text!r}") from None
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise ValueError(f"must be from 0.0 to 1.0, not {text}")
    return value


def max_message_size(text: str) -> int:
    size = integer(text)
    if size < 1:
        raise ValueError(f"must be 1 byte or more, not {size}")
    if size > MAX_MESSAGE_SIZE:
        # RFC 1870 section 4: SIZE's value has at most 20 digits.
        raise ValueError(f"must be at most {MAX_MESSAGE_SIZE} (20 digits, RFC 1870), not {size}")
    return size


def max_recipients(text: str) -> int:
    count = integer(text)
    if count < MIN_RECIPIENTS:
        raise ValueError(
            f"must be {MIN_RECIPIENTS} or more (RFC 5321 section 4.5.3.1.8), not {count}"
        )
    return count


def junk_command_limit(text: str) -> int:
    count = integer(text)
    if count < 0:
        raise ValueError(f"must be 0 (no limit) or more, not {count}")
    return count


# An SMTP verb is a keyword of letters (RFC 5321 section 4.1.1).
_VERB = re.compile(r"[A-Za-z]+")


def forbidden_commands(text: str) -> frozenset[str]:
    """Verbs, separated by commas or spaces; ``none`` (or empty) forbids nothing."""
    words = [w for w in re.split(r"[\s,]+", text) if w]
    if words == ["none"] or not words:
        return frozenset()
    bad = [w for w in words if not _VERB.fullmatch(w)]
    if bad:
        raise ValueError(f"must be command verbs (letters only), not {', '.join(map(repr, bad))}")
    return frozenset(w.upper() for w in words)


def workers(text: str) -> int:
    count = integer(text)
    if not 1 <= count <= MAX_WORKERS:
        raise ValueError(f"must be from 1 to {MAX_WORKERS}, not {count}")
    return count


def account_name(text: str) -> str:
    # Whether the user or group exists is checked by -t and at start-up
    # (supervisor/privileges.py), on the host where the server runs.
    if any(ch.isspace() for ch in text):
        raise ValueError(f"must be a single name without spaces, not {text!r}")
    return text


def mailname(text: str) -> str:
    problem = mailname_problem(text)
    if problem is not None:
        raise ValueError(f"{text!r} is not usable: {problem}")
    return text


def log_format(text: str) -> str:
    word = text.lower()
    if word not in {"text", "json"}:
        raise ValueError(f"must be text or json, not {text!r}")
    return word


def token(text: str) -> str:
    """A bearer token (RFC 6750 section 2.1 b64token): one word, printable ASCII."""
    if not text or not all("!" <= c <= "~" for c in text):
        raise ValueError("must be one word of printable ASCII characters, no spaces")
    return text
