"""Checking what a request carries, with errors that name the bad field.

``BadRequestError`` becomes a 400 whose JSON body is ``{"error": MESSAGE, "field":
FIELD}``. JSON is read strictly: a body must be one object, UTF-8 (RFC 8259
section 8.1), with no repeated names (section 4 leaves them undefined, so we
refuse rather than guess) and no ``NaN``/``Infinity`` (not JSON at all).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

JSON = dict[str, Any]


class BadRequestError(ValueError):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def _unique(pairs: list[tuple[str, Any]]) -> JSON:
    found: JSON = {}
    for name, value in pairs:
        if name in found:
            raise BadRequestError(f"field {name!r} is given twice", name)
        found[name] = value
    return found


def _no_constants(name: str) -> Any:
    raise BadRequestError(f"{name} is not a JSON number")


def json_object(body: bytes, *, empty_ok: bool = False) -> JSON:
    """The body as a JSON object; an empty body is ``{}`` if ``empty_ok``."""
    if not body.strip():
        if empty_ok:
            return {}
        raise BadRequestError("the body must be a JSON object")
    try:
        text = body.decode("utf-8")
        value = json.loads(text, object_pairs_hook=_unique, parse_constant=_no_constants)
    except UnicodeDecodeError:
        raise BadRequestError("the body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise BadRequestError(
            f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise BadRequestError("the body is nested too deeply") from None
    if not isinstance(value, dict):
        raise BadRequestError("the body must be a JSON object")
    return value


def ttl(fields: JSON) -> float | None:
    """Remove and check the optional ``ttl``: seconds, a finite number above 0."""
    if "ttl" not in fields:
        return None
    value = fields.pop("ttl")
    # bool is an int in Python, but true is not a number of seconds.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequestError("ttl must be a number of seconds", "ttl")
    if not math.isfinite(value) or value <= 0:
        raise BadRequestError("ttl must be more than 0 seconds", "ttl")
    return float(value)


def limit(query: Sequence[tuple[str, str]]) -> int | None:
    """``?limit=N`` for ``/messages``: a whole number, 0 or more; no other parameter.

    ``query`` is every (name, value) pair in order, repeated names included.
    """
    values = []
    for name, value in query:
        if name != "limit":
            raise BadRequestError(f"unknown query parameter {name!r}", name)
        values.append(value)
    if not values:
        return None
    if len(values) > 1:
        raise BadRequestError("limit is given twice", "limit")
    text = values[0]
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        raise BadRequestError("limit must be a whole number from 0 to 999999999", "limit")
    return int(text)
