"""The control API's aiohttp application (OBSERVE.md "Control API").

``make_app(backend, token)`` gives a ``web.Application``; ``control.serve``
runs it on ``control_listen``. Every answer is JSON (``/healthz`` and
``/metrics`` excepted, which are plain text for load balancers and
Prometheus), every error is ``{"error": ..., "field": ...}`` with its status,
and nothing a client sends reaches a traceback:

- authentication: with a token, every request but ``/healthz`` and
  ``/metrics`` needs ``Authorization: Bearer TOKEN`` (RFC 6750 section 2.1),
  compared in constant time; otherwise 401 with ``WWW-Authenticate: Bearer``;
- bodies over ``MAX_BODY`` bytes get 413 before they are read in full
  (aiohttp's ``client_max_size``);
- unknown paths 404, wrong methods 405 (aiohttp's router), in JSON too;
- a client gone before its request was read whole is worth a debug line;
- a backend failure other than its typed errors is logged here with its
  traceback and answered 500 ``internal error``.

What aiohttp refuses before any handler runs (a request that is not HTTP,
an overlong line or header) gets aiohttp's own plain-text 400; aiohttp logs it
to ``HTTP_LOG`` (``control.serve``), where it is turned to debug level: anyone
who reaches the port could otherwise fill the log with tracebacks.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from blackhole.control import bodies
from blackhole.control.backend import Backend, RuleConflictError, RuleError, UnknownRuleError
from blackhole.control.stats import stats
from blackhole.observe.metrics import CONTENT_TYPE, render
from blackhole.rules.store import StoreUnavailableError

log = logging.getLogger(__name__)


class _AsDebug(logging.Filter):
    """aiohttp reports a request it could not read (or a client gone) as an
    error, with a traceback: the client's doing, worth a debug line at most.
    Anything else it reports keeps its level."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError | ConnectionError):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return log.isEnabledFor(logging.DEBUG)


HTTP_LOG = logging.getLogger(f"{__name__}.http")
HTTP_LOG.addFilter(_AsDebug())

MAX_BODY = 64 * 1024  # a rule is a few hundred bytes
OPEN_PATHS = frozenset({"/healthz", "/metrics"})
BACKEND: web.AppKey[Backend] = web.AppKey("backend", Backend)


class Token:
    """The bearer token in force; replaced in place when a reload reads a new one."""

    def __init__(self, text: str | None) -> None:
        self.value: bytes | None = None
        self.set(text)

    def set(self, text: str | None) -> None:
        self.value = None if text is None else text.encode("utf-8")


TOKEN: web.AppKey[Token] = web.AppKey("token", Token)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(
    status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return web.json_response(body, status=status, headers=headers)


def _authorized(request: web.Request, token: bytes) -> bool:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    # compare_digest: the time taken says nothing about how much matched.
    return hmac.compare_digest(credentials.strip().encode("utf-8", "surrogateescape"), token)


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app[TOKEN].value
    if token is not None and request.path not in OPEN_PATHS and not _authorized(request, token):
        return _error(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})
    try:
        return await handler(request)
    except bodies.BadRequestError as exc:
        return _error(400, exc.message, exc.field)
    except RuleError as exc:
        return _error(400, str(exc), exc.field)
    except RuleConflictError as exc:
        return _error(409, str(exc), "name")
    except UnknownRuleError as exc:
        return _error(404, str(exc))
    except StoreUnavailableError as exc:
        return _error(503, str(exc))  # Redis is down (state_url): try again later
    except ConnectionResetError:
        # The client left in the middle of its body: nobody reads this answer.
        log.debug("control API: %s %s: the client left mid-request", request.method, request.path)
        return _error(400, "the request was cut short")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return _error(exc.status, exc.reason, headers=allow)
    except Exception:
        log.exception("control API: %s %s failed", request.method, request.path)
        return _error(500, "internal error")


async def _healthz(request: web.Request) -> web.Response:
    ok, missing = request.app[BACKEND].health()
    if ok:
        return web.Response(text="ok\n")
    return web.Response(status=503, text="missing: " + ", ".join(missing) + "\n")


async def _metrics(request: web.Request) -> web.Response:
    figures = request.app[BACKEND].figures()
    response = web.Response(body=render(lambda: figures))
    response.headers["Content-Type"] = CONTENT_TYPE
    return response


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(stats(request.app[BACKEND].figures()))


async def _rules(request: web.Request) -> web.Response:
    return web.json_response(request.app[BACKEND].rules())


async def _add_rule(request: web.Request) -> web.Response:
    fields = bodies.json_object(await request.read())
    ttl = bodies.ttl(fields)
    stored = await request.app[BACKEND].add_rule(fields, ttl)
    return web.json_response(stored, status=201)


async def _remove_rule(request: web.Request) -> web.Response:
    await request.app[BACKEND].remove_rule(request.match_info["name"])
    return web.Response(status=204)


async def _remove_all_rules(request: web.Request) -> web.Response:
    await request.app[BACKEND].remove_all_rules()
    return web.Response(status=204)


async def _reset(request: web.Request) -> web.Response:
    fields = bodies.json_object(await request.read(), empty_ok=True)
    for name in fields:
        raise bodies.BadRequestError(f"reset takes no fields: {name!r}", name)
    await request.app[BACKEND].reset()
    return web.Response(status=204)


async def _messages(request: web.Request) -> web.Response:
    limit = bodies.limit(list(request.query.items()))
    records = request.app[BACKEND].messages(limit)
    # Up to record = 100000 of them, tens of MB of JSON: encoded off the loop,
    # which goes on deciding rules and answering the supervisor's heartbeat.
    body = await asyncio.to_thread(json.dumps, records)
    return web.Response(text=body, content_type="application/json")


def make_app(backend: Backend, token: str | None) -> web.Application:
    """The application; ``token`` None means no authentication (loopback only)."""
    app = web.Application(middlewares=[_guard], client_max_size=MAX_BODY)
    app[BACKEND] = backend
    app[TOKEN] = Token(token)
    app.router.add_get("/healthz", _healthz, allow_head=True)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/stats", _stats)
    app.router.add_get("/rules", _rules)
    app.router.add_post("/rules", _add_rule)
    app.router.add_delete("/rules", _remove_all_rules)
    app.router.add_delete("/rules/{name}", _remove_rule)
    app.router.add_post("/reset", _reset)
    app.router.add_get("/messages", _messages)
    return app
