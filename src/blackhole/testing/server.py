"""``Blackhole``: a real Blackhole server for a test, on ephemeral loopback ports.

Why a child process and not a server on a thread of the test process: the
server *is* a supervisor, a hub and workers, and the records, counters and
API rules a test asserts on live in the hub. Running the real ``blackhole``
command (``sys.executable -m blackhole -c GENERATED.conf``) and talking to
its control API gives a test exactly the server users run, with no second
implementation to drift from it, and keeps the test process free of the
server's event loop, threads and signal handlers. The cost is start-up: one
interpreter start and the imports, with the hub and the worker forked from
the supervisor rather than spawned (``BLACKHOLE_WORKER_START=fork``), about
0.4 s on an idle machine; ``blackhole`` shares one server across a test
session so that a suite pays it once (docs/testing.md).

Everything a test does goes through the control API of OBSERVE.md:
``messages`` is ``GET /messages`` (``record = N``), ``add_rule`` is
``POST /rules`` (every worker applies the rule before the call returns),
``reset`` is ``POST /reset``, ``stats`` is ``GET /stats``.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import tempfile
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from blackhole.config.classic import parse_config
from blackhole.server.tls import generate_self_signed
from blackhole.supervisor.leftovers import PrivateDirectory
from blackhole.testing import configtext
from blackhole.testing.control import ControlClient
from blackhole.testing.process import ServerProcess
from blackhole.testing.records import Message

HOST = "127.0.0.1"
DEFAULT_RECORD = 10_000  # enough for any one test; GET /messages never holds more
POLL_FIRST, POLL_MAX = 0.005, 0.1  # seconds between looks while waiting for messages

Rule = Mapping[str, Any]


class Blackhole:
    """A real Blackhole server on free ports of 127.0.0.1, for as long as a test needs it.

    ``Blackhole(**options)`` takes the config file's keys as keyword
    arguments (``mode="bounce"``, ``delay="1-2"``, ``auth_required=True``)
    and ``config=PATH`` for a config file whose keys the keyword arguments
    then replace. ``rules`` is either a rules file (``rules="rules.toml"``, the
    config key) or a list of rules as dictionaries (RULES.md fields), added
    through the control API at start so that ``remove_rule`` can take them
    away. ``tls`` (default on) adds STARTTLS on ``port`` and an SMTPS
    listener on ``smtps_port``, with a certificate made for this server;
    ``lmtp=True`` adds an LMTP listener on ``lmtp_port``. ``record`` is how
    many messages ``messages`` keeps.

    Use it as a context manager, or call ``start()`` and ``stop()``.
    """

    host: str = HOST

    def __init__(
        self,
        *,
        config: str | os.PathLike[str] | None = None,
        rules: str | os.PathLike[str] | Sequence[Rule] | None = None,
        tls: bool = True,
        lmtp: bool = False,
        record: int = DEFAULT_RECORD,
        start_timeout: float = 30.0,
        **options: Any,
    ) -> None:
        self._config = config
        self._options = dict(options)
        self._rules: list[Rule] = []
        if isinstance(rules, str | os.PathLike):
            self._options["rules"] = rules
        elif rules is not None:
            self._rules = [_rule_body(rule) for rule in rules]
        self._tls = tls
        self._lmtp = lmtp
        self._record = record
        if not _seconds(start_timeout) or not start_timeout:
            raise ValueError(f"start_timeout is a number of seconds over 0, not {start_timeout!r}")
        self._start_timeout = start_timeout
        self._directory: PrivateDirectory | None = None
        self._cert: Path | None = None
        self._server: ServerProcess | None = None
        self._control: ControlClient | None = None

    # --- life -------------------------------------------------------------------------

    def start(self) -> Blackhole:
        """Start the server; returns once it serves. Raises ``ConfigError`` or ``StartError``."""
        if self._server is not None:
            raise RuntimeError("this Blackhole is already running")
        # Its config and certificate; if this process is killed outright, the
        # next Blackhole started with the same TMPDIR removes it.
        self._directory = PrivateDirectory("blackhole-testing-", Path(tempfile.gettempdir()))
        directory = self._directory.path
        try:
            pair = generate_self_signed(HOST, directory) if self._tls else None
            settings = configtext.settings_for(
                self._options, self._config, tls=pair, lmtp=self._lmtp, record=self._record
            )
            text = configtext.render(settings)
            # The server's own loader, before any process starts: a bad
            # option fails here, at once, with the loader's message.
            parse_config(text, filename="Blackhole options")
            if self._tls:
                self._cert = Path(settings["tls_cert"])
            path = directory / "blackhole.conf"
            path.write_text(text)
            self._server = ServerProcess.start(path, self._start_timeout)
            self._control = ControlClient(self._server.control_port, HOST)
            for rule in self._rules:
                self.add_rule(rule)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server and remove its files; safe to call twice."""
        server, self._server, self._control = self._server, None, None
        directory, self._directory = self._directory, None
        try:
            if server is not None:
                server.stop()
        finally:
            if directory is not None:
                directory.remove()

    def __enter__(self) -> Blackhole:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        server = self._server
        if server is None:
            return "<Blackhole (not running)>"
        ports = " ".join(
            f"{scheme}={port}"
            for scheme in ("smtp", "smtps", "lmtp")
            if (port := server.port(scheme)) is not None
        )
        return f"<Blackhole {HOST} {ports}>"

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.running()

    def log(self) -> str:
        """The server's last log lines (for a failing test's message)."""
        return self._running().text()

    # --- where to connect -------------------------------------------------------------

    def _running(self) -> ServerProcess:
        if self._server is None:
            raise RuntimeError("this Blackhole is not running: use it as `with` or call start()")
        return self._server

    def _port(self, scheme: str, asked: str) -> int:
        port = self._running().port(scheme)
        if port is None:
            raise RuntimeError(f"this Blackhole has no {scheme} listener: {asked}")
        return port

    @property
    def port(self) -> int:
        """The plain SMTP port (with STARTTLS unless ``tls=False``)."""
        return self._port("smtp", "")

    @property
    def smtps_port(self) -> int:
        """The implicit-TLS (SMTPS) port."""
        return self._port("smtps", "it was started with tls=False")

    @property
    def lmtp_port(self) -> int:
        """The LMTP port (RFC 2033)."""
        return self._port("lmtp", "start it with lmtp=True")

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's certificate (and checks it)."""
        self._running()
        if self._cert is None:
            raise RuntimeError("this Blackhole was started with tls=False")
        return ssl.create_default_context(cafile=str(self._cert))

    # --- control ----------------------------------------------------------------------

    def _api(self) -> ControlClient:
        server = self._running()
        code = server.proc.poll()
        if code is not None:
            # Else the test sees ConnectionRefusedError and no hint of why.
            raise RuntimeError(
                f"this Blackhole's server has exited (code {code}); it said:\n{server.text()}"
            )
        assert self._control is not None
        return self._control

    @property
    def messages(self) -> list[Message]:
        """The recorded messages, oldest first (the last ``record`` of them)."""
        return self._recorded(None)

    def _recorded(self, limit: int | None) -> list[Message]:
        """The newest ``limit`` records (all: None), oldest first."""
        query = "" if limit is None else f"?limit={limit}"
        records = self._api().request("GET", f"/messages{query}")
        return [Message.from_json(record) for record in reversed(records)]

    def wait_for(self, messages: int, timeout: float = 5.0) -> list[Message]:
        """Wait until at least ``messages`` have been recorded; return them all.

        Raises ``TimeoutError`` naming what did arrive.
        """
        self._check_wait(messages, timeout)
        deadline = time.monotonic() + timeout
        pause = POLL_FIRST
        while len(self._recorded(messages)) < messages and time.monotonic() < deadline:
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, POLL_MAX)
        return _enough(self.messages, messages, timeout)

    async def wait_for_async(self, messages: int, timeout: float = 5.0) -> list[Message]:
        """``wait_for`` for async tests: the event loop keeps running while it waits."""
        self._check_wait(messages, timeout)
        deadline = time.monotonic() + timeout
        pause = POLL_FIRST
        while (
            len(await asyncio.to_thread(self._recorded, messages)) < messages
            and time.monotonic() < deadline
        ):
            await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, POLL_MAX)
        return _enough(await asyncio.to_thread(self._recorded, None), messages, timeout)

    def _check_wait(self, messages: object, timeout: object) -> None:
        """A wait that can end: a count ``record`` can hold, a time to give up."""
        if not isinstance(messages, int) or isinstance(messages, bool):
            raise TypeError(f"messages is a whole number, not {messages!r}")
        if messages < 0:
            raise ValueError(f"messages must be 0 or more, not {messages}")
        if messages > self._record:
            raise ValueError(
                f"messages={messages} can never have arrived: record={self._record} keeps"
                " only the last that many (Blackhole(record=N))"
            )
        if not _seconds(timeout):
            raise TypeError(f"timeout is a number of seconds, 0 or more, not {timeout!r}")

    def add_rule(self, rule: Rule, ttl: float | None = None) -> dict[str, Any]:
        """Add a rule (RULES.md fields); in force on every worker when this returns."""
        body = _rule_body(rule)
        if ttl is not None:
            body["ttl"] = ttl
        stored: dict[str, Any] = self._api().request("POST", "/rules", body)
        return stored

    def remove_rule(self, name: str) -> None:
        """Remove an API rule by name (``ControlError`` 404 if there is none)."""
        # Quoted: a name no rule can have ("my rule") is then the API's 404,
        # not an http.client error about the URL.
        self._api().request("DELETE", f"/rules/{urllib.parse.quote(name, safe='')}")

    def clear_rules(self) -> None:
        """Remove every API rule (rules from a rules file stay)."""
        self._api().request("DELETE", "/rules")

    def rules(self) -> list[dict[str, Any]]:
        """Every rule in force, API rules first, with ``hits`` and ``spent``."""
        listed: list[dict[str, Any]] = self._api().request("GET", "/rules")
        return listed

    def reset(self) -> None:
        """Zero the counters, the rules' state (greylist, counts) and the recorded messages."""
        self._api().request("POST", "/reset")

    def stats(self) -> dict[str, Any]:
        """The ``GET /stats`` dictionary: messages by outcome, replies by code, rules' hits..."""
        figures: dict[str, Any] = self._api().request("GET", "/stats")
        return figures


def _rule_body(rule: object) -> dict[str, Any]:
    # dict() of a string or a list fails with a message about sequences.
    if not isinstance(rule, Mapping):
        raise TypeError(f"a rule is a dictionary of RULES.md fields, not {rule!r}")
    return dict(rule)


def _seconds(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def _enough(seen: list[Message], wanted: int, timeout: float) -> list[Message]:
    if len(seen) >= wanted:
        return seen
    lines = "".join(f"\n  {message.summary()}" for message in seen) or " nothing"
    raise TimeoutError(
        f"expected {wanted} message{'s' if wanted != 1 else ''} within {timeout:g}s;"
        f" {len(seen)} arrived:{lines}"
    )
