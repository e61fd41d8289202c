"""The configuration as one frozen dataclass tree.

Every loader (the classic ``key = value`` file, the command line) builds a
``Config``; the server and the supervisor only ever read one. A reload (SIGHUP)
builds a new ``Config`` and swaps it in for new sessions, so nothing here is
ever mutated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from blackhole.net import host_port
from blackhole.policy.modes import CLASSIC_RANDOM_ACCEPT, Delay, Mode
from blackhole.protocol.settings import FORBIDDEN_COMMANDS
from blackhole.rules.parse import RuleFile

DEFAULT_TIMEOUT = 60.0
MAX_TIMEOUT = 180.0
# A TLS handshake takes milliseconds; a client that has not finished one in
# this time is a plaintext client on a TLS port, a scanner or gone.
DEFAULT_TLS_HANDSHAKE_TIMEOUT = 10.0
MIN_TLS_HANDSHAKE_TIMEOUT = 1.0
MAX_TLS_HANDSHAKE_TIMEOUT = 60.0
DEFAULT_MAX_MESSAGE_SIZE = 512_000
# RFC 5321 section 4.5.3.1.8: a server must accept at least 100 recipients.
DEFAULT_MAX_RECIPIENTS = 1000
# With no config file: unprivileged loopback ports, so a laptop user needs no root.
DEFAULT_SMTP_PORT = 2525
DEFAULT_SMTPS_PORT = 4650
DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Listener:
    """One ``listen`` / ``tls_listen`` / ``lmtp_listen`` entry.

    ``host`` is what to bind: ``"0.0.0.0"`` for the classic ``:PORT`` (all IPv4
    addresses), ``"::"`` for ``:::PORT`` (all IPv6 addresses), else a literal
    address or a host name. ``mode`` and ``delay`` are the per-listener flags;
    ``None`` means "not set on this listener".
    """

    host: str
    port: int
    tls: bool = False
    mode: Mode | None = None
    delay: Delay | None = None
    lmtp: bool = False  # LMTP (RFC 2033) rather than SMTP
    name: str | None = None  # the name= flag: for rules (listener) and metrics labels
    proxy: bool = False  # proxy=yes: a PROXY protocol header comes first (server.proxied)
    # cert= and key= (absolute paths): this listener's own certificate, in
    # place of tls_cert/tls_key.
    cert: str | None = None
    key: str | None = None
    # unix:/path entries: the socket file (absolute), then host is "unix" and
    # port 0; socket_mode= is its permission bits (None: as the umask leaves them).
    path: str | None = None
    socket_mode: int | None = None
    starttls: bool = True  # starttls=no: STARTTLS not offered even with a certificate

    @property
    def scheme(self) -> str:
        """How the start-up line and messages name the protocol."""
        return "lmtp" if self.lmtp else "smtps" if self.tls else "smtp"

    @property
    def where(self) -> str:
        """The address as the config writes it: ``HOST:PORT`` or ``unix:/path``."""
        return f"unix:{self.path}" if self.path is not None else host_port(self.host, self.port)

    def __str__(self) -> str:
        return f"{self.scheme}://{self.where}"


@dataclass(frozen=True, slots=True)
class Config:
    """Everything that shapes a running server."""

    listeners: tuple[Listener, ...] = (
        Listener(DEFAULT_HOST, DEFAULT_SMTP_PORT),
        Listener(DEFAULT_HOST, DEFAULT_SMTPS_PORT, tls=True),
    )
    # --- classic keys -----------------------------------------------------
    user: str | None = None
    group: str | None = None
    pidfile: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_dhparams: str | None = None
    delay: Delay | None = None
    mode: Mode = Mode.ACCEPT
    random_accept: float = CLASSIC_RANDOM_ACCEPT  # share of accepts in random mode
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    dynamic_switch: bool = True
    workers: int = 1
    # --- new keys -----------------------------------------------------------
    mailname: str | None = None  # greeting name; else /etc/mailname, else FQDN
    max_recipients: int = DEFAULT_MAX_RECIPIENTS
    junk_command_limit: int = 100  # Postfix's smtpd_junk_command_limit; 0: none
    forbidden_commands: frozenset[str] = FORBIDDEN_COMMANDS  # dropped without a reply
    seed: int | None = None  # seeds random.Random so a run can be replayed
    auth_required: bool = False  # MAIL before a successful AUTH gets 530 5.7.0
    auth_tls_only: bool = False  # offer AUTH only once TLS is on
    log_file: str | None = None
    log_format: str = "text"  # "text" or "json"
    tls_handshake_timeout: float = DEFAULT_TLS_HANDSHAKE_TIMEOUT
    grace_period: float = 30.0  # seconds sessions get to finish at SIGTERM
    heartbeat_interval: float = 5.0  # supervisor -> worker liveness ping
    control_listen: tuple[str, int] | None = None  # the control API's (host, port); None: off
    control_token: str | None = None  # bearer token the control API requires
    control_token_file: str | None = None  # a file holding it (absolute path), read at start
    rules: RuleFile | None = None  # the `rules` file, parsed when the config is loaded
    address_rules: tuple[str, ...] = ()  # "mox", "ses": docs/rules.md "Address conventions"
    stats_interval: float = 0.0  # seconds between console progress lines; 0: off
    event_log: str | None = None  # JSON lines per message and session; "-": stdout
    record: int = 0  # message records (with headers) kept for GET /messages
    state_url: str | None = None  # rule state in Redis, shared by servers; None: in the hub
    # --- command line only ---------------------------------------------------
    less_secure: bool = False  # -ls: skip single-use DH keys (classic meaning)
    debug: bool = False
    quiet: bool = False
    background: bool = False
    config_file: str | None = None  # where this came from (absolute), for SIGHUP reloads
    base_dir: str | None = None  # where relative paths in config_file start (absolute)
    generated_cert: bool = field(default=False)  # True: no tls_cert, self-signed at start

    @property
    def tls_needed(self) -> bool:
        """True if the server needs a TLS context (the one place this is decided).

        A configured certificate, the no-config quick start, or an SMTPS
        listener without a cert= of its own; without a certificate a
        self-signed one is made. Listeners with cert= have their own context
        besides (``listener_tls``).
        """
        return (
            self.tls_cert is not None
            or self.generated_cert
            or any(listener.tls and listener.cert is None for listener in self.listeners)
        )

    @property
    def listener_tls(self) -> tuple[tuple[str, str], ...]:
        """The distinct (cert, key) pairs of listeners' cert=/key= flags, in order."""
        pairs = (
            (listener.cert, listener.key)
            for listener in self.listeners
            if listener.cert is not None and listener.key is not None
        )
        return tuple(dict.fromkeys(pairs))
