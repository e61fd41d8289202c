"""What a connection needs from its listener, built once per (config, listener).

A reload (SIGHUP) builds new contexts; connections keep the one they started
with, so sessions in flight finish under the old settings.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, replace

from blackhole.config.model import Config, Listener
from blackhole.policy.decide import Defaults
from blackhole.protocol.settings import SessionSettings


@dataclass(frozen=True, slots=True)
class ListenerContext:
    listener: Listener
    settings: SessionSettings
    defaults: Defaults
    timeout: float
    tls_handshake_timeout: float
    ssl_context: ssl.SSLContext | None  # SMTPS handshake and STARTTLS
    name: str = "-"  # the listener's label in counts and the event log
    # ``settings`` with the header fields collected: for the sessions that
    # begin while a rule with a ``header`` matcher is in force.
    header_settings: SessionSettings | None = None
    # The listener's flags every connection reads, copied here: this class is
    # compiled, and reading them from the Listener is a lookup by name each.
    implicit_tls: bool = False  # SMTPS: TLS before the greeting
    proxy: bool = False  # a PROXY protocol header comes first
    unix: bool = False  # a UNIX socket: the peer has no address


def build_context(
    config: Config,
    listener: Listener,
    mailname: str,
    ssl_context: ssl.SSLContext | None,
    challenge: Callable[[], str] | None = None,
) -> ListenerContext:
    settings = SessionSettings(
        mailname=mailname,
        max_message_size=config.max_message_size,
        max_recipients=config.max_recipients,
        junk_command_limit=config.junk_command_limit,
        forbidden_commands=config.forbidden_commands,
        # Listener flags win over headers (SPEC precedence), and the classic
        # server stopped reading switches altogether on flagged listeners.
        dynamic_switch=config.dynamic_switch,
        lmtp=listener.lmtp,
        tls_available=ssl_context is not None and not listener.tls and listener.starttls,
        tls_active=listener.tls,  # SMTPS: the core starts after the handshake
        auth_required=config.auth_required,
        auth_tls_only=config.auth_tls_only,
        # Recorded messages carry their header fields (record = N); header
        # matchers read them too, but only sessions begun while such a rule
        # is in force pay for it (``header_settings``).
        collect_headers=config.record > 0,
    )
    if challenge is not None:
        settings = replace(settings, challenge=challenge)
    defaults = Defaults(
        mode=config.mode,
        delay=config.delay,
        listener_mode=listener.mode,
        listener_delay=listener.delay,
        random_accept=config.random_accept,
    )
    return ListenerContext(
        listener,
        settings,
        defaults,
        config.timeout,
        config.tls_handshake_timeout,
        ssl_context,
        header_settings=replace(settings, collect_headers=True),
        implicit_tls=listener.tls,
        proxy=listener.proxy,
        unix=listener.path is not None,
    )
