"""Every configuration-file option: name, default, accepted values, meaning.

This is the one list of valid keys. The classic loader rejects any other key
with a message built here, ``blackhole_config`` prints it, and
docs/configuration.md describes the same list at length (a test keeps the two
in step).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Option:
    name: str
    default: str  # as a human reads it, e.g. "60" or "(none)"
    values: str  # type and limits, e.g. "seconds, 0 to 180"
    meaning: str
    example: str  # a value that would be valid in a file
    classic: bool  # known to Blackhole 2.1.19


OPTIONS: tuple[Option, ...] = (
    Option(
        "listen",
        "127.0.0.1:2525, when neither listen nor tls_listen is set",
        "ADDR:PORT [mode=MODE] [delay=N|delay=A-B] [name=NAME] [proxy=yes|no]"
        " [cert=PATH key=PATH] [starttls=yes|no], ...; unix:PATH [socket_mode=0660] [flags]"
        " for a UNIX socket",
        "Plain SMTP listeners (STARTTLS offered when tls_cert is set, or the entry has"
        " cert=/key=). :PORT means every IPv4 address, :::PORT every IPv6 address."
        " proxy=yes: a PROXY protocol v1/v2 header (HAProxy send-proxy) comes first"
        " and names the client.",
        ":25, :::25, 127.0.0.1:2525 mode=bounce delay=1-5",
        classic=True,
    ),
    Option(
        "tls_listen",
        "127.0.0.1:4650, when neither listen nor tls_listen is set",
        "same syntax as listen; needs tls_cert and tls_key, or cert=/key= on each entry",
        "Implicit-TLS (SMTPS) listeners.",
        ":465, :::465",
        classic=True,
    ),
    Option(
        "lmtp_listen",
        "none",
        "same syntax as listen",
        "LMTP (RFC 2033) listeners: LHLO instead of HELO/EHLO, and one reply per"
        " recipient after the message (STARTTLS offered when tls_cert is set).",
        "127.0.0.1:2424 mode=random",
        classic=False,
    ),
    Option(
        "user",
        "(none: keep the user that started blackhole)",
        "user name",
        "User to switch to after binding the listeners.",
        "blackhole",
        classic=True,
    ),
    Option(
        "group",
        "(none: keep the current group)",
        "group name",
        "Group to switch to after binding the listeners.",
        "blackhole",
        classic=True,
    ),
    Option(
        "pidfile",
        "(none: no pid file)",
        "path; its directory must exist",
        "Where to write the process id.",
        "/var/run/blackhole.pid",
        classic=True,
    ),
    Option(
        "timeout",
        "60",
        "seconds, 0 to 180; 0 means the default",
        "Idle time after which a client gets 421 and is disconnected.",
        "30",
        classic=True,
    ),
    Option(
        "tls_cert",
        "(none)",
        "path to a readable PEM certificate",
        "Certificate for tls_listen and STARTTLS.",
        "/etc/ssl/blackhole.crt",
        classic=True,
    ),
    Option(
        "tls_key",
        "(none)",
        "path to a readable PEM private key; needed with tls_cert",
        "Private key of tls_cert.",
        "/etc/ssl/private/blackhole.key",
        classic=True,
    ),
    Option(
        "tls_dhparams",
        "(none: ECDHE only)",
        "path to a readable PEM DH parameters file; needs tls_cert",
        "Diffie-Hellman parameters for DHE ciphers.",
        "/etc/ssl/blackhole.dhparams.pem",
        classic=True,
    ),
    Option(
        "delay",
        "(none: answer at once)",
        "seconds 0 to 60, or a range A-B (or A, B)",
        "Wait this long before the final reply to each message.",
        "5-10",
        classic=True,
    ),
    Option(
        "mode",
        "accept",
        "accept, bounce or random",
        "How every message is answered: queued, bounced, or either at random.",
        "bounce",
        classic=True,
    ),
    Option(
        "random_accept",
        "(1/11: accept and each of the ten bounces equally likely)",
        "a number from 0.0 to 1.0",
        "In random mode, the share of messages accepted; the rest get a random bounce.",
        "0.5",
        classic=False,
    ),
    Option(
        "max_message_size",
        "512000",
        "bytes, a whole number of 1 or more",
        "Bigger messages are read to the end and refused with 552.",
        "1048576",
        classic=True,
    ),
    Option(
        "dynamic_switch",
        "true",
        "true/false (also yes/no, on/off, 1/0)",
        "Honour X-Blackhole-Mode and X-Blackhole-Delay headers in messages.",
        "false",
        classic=True,
    ),
    Option(
        "workers",
        "1",
        "whole number, 1 to 64",
        "Worker processes sharing the listeners.",
        "4",
        classic=True,
    ),
    Option(
        "mailname",
        "(none: /etc/mailname, else the host's FQDN)",
        "host name, no spaces",
        "Name in the 220 greeting and EHLO reply.",
        "mx.example.test",
        classic=False,
    ),
    Option(
        "max_recipients",
        "1000",
        "whole number, 100 or more (RFC 5321 4.5.3.1.8)",
        "RCPT commands accepted per message; more get 452.",
        "100",
        classic=False,
    ),
    Option(
        "junk_command_limit",
        "100",
        "whole number, 0 for no limit",
        "NOOP, RSET, VRFY, EXPN, HELP and ETRN allowed between two messages;"
        " one more gets 421 and the connection is closed (Postfix's smtpd_junk_command_limit).",
        "20",
        classic=False,
    ),
    Option(
        "forbidden_commands",
        "CONNECT GET POST",
        "command verbs separated by spaces or commas, or none",
        "A client that sends one of these, or a line that looks like a mail or HTTP"
        " header, is disconnected without a reply (a browser or proxy talking to an"
        " SMTP port; Postfix's smtpd_forbidden_commands).",
        "CONNECT GET POST PUT",
        classic=False,
    ),
    Option(
        "seed",
        "(none: a fresh random seed)",
        "whole number",
        "Seed for random mode and random delays, so a run can be replayed.",
        "42",
        classic=False,
    ),
    Option(
        "auth_required",
        "false",
        "true/false",
        "Refuse MAIL with 530 until the client has authenticated.",
        "true",
        classic=False,
    ),
    Option(
        "auth_tls_only",
        "false",
        "true/false",
        "Offer AUTH only once the connection is encrypted.",
        "true",
        classic=False,
    ),
    Option(
        "log_file",
        "(none: log to standard error)",
        "path; its directory must exist",
        "Append the log to this file instead.",
        "/var/log/blackhole.log",
        classic=False,
    ),
    Option(
        "log_format",
        "text",
        "text or json",
        "json writes one JSON object per line.",
        "json",
        classic=False,
    ),
    Option(
        "grace_period",
        "30",
        "seconds, 0 to 3600",
        "On SIGTERM/SIGINT, how long sessions get to finish their transaction.",
        "10",
        classic=False,
    ),
    Option(
        "tls_handshake_timeout",
        "10",
        "seconds, 1 to 60",
        "Time a client gets to complete a TLS handshake (SMTPS or STARTTLS) before it is"
        " disconnected.",
        "5",
        classic=False,
    ),
    Option(
        "heartbeat_interval",
        "5",
        "seconds, more than 0 and at most 60",
        "How often the supervisor checks that each worker is alive.",
        "2",
        classic=False,
    ),
    Option(
        "control_listen",
        "(none: no control API)",
        "ADDR:PORT; a non-loopback address needs control_token or control_token_file",
        "Where the HTTP control API listens (health, metrics, stats, rules, reset, messages).",
        "127.0.0.1:8025",
        classic=False,
    ),
    Option(
        "control_token",
        "(none: no authentication)",
        "one word, no spaces",
        "Bearer token the control API requires on every request but /healthz and /metrics.",
        "s3cret-t0ken",
        classic=False,
    ),
    Option(
        "control_token_file",
        "(none)",
        "path to a readable file holding the token; re-read on SIGHUP",
        "Like control_token, read from a file (a mounted secret, say).",
        "/run/secrets/blackhole-token",
        classic=False,
    ),
    Option(
        "rules",
        "(none)",
        "path to a TOML rules file",
        "Scripted faults at every stage of the conversation (docs/rules.md); reloaded by SIGHUP.",
        "/etc/blackhole-rules.toml",
        classic=False,
    ),
    Option(
        "address_rules",
        "(off)",
        "mox, ses, or both",
        "Replies chosen by the recipient or sender address, as mox and the SES simulator do.",
        "mox, ses",
        classic=False,
    ),
    Option(
        "stats_interval",
        "0",
        "seconds, 0 (off) to 86400",
        "Log a progress line (messages per second, open sessions, replies by class) this often.",
        "10",
        classic=False,
    ),
    Option(
        "event_log",
        "(none)",
        "a file name, or - for standard output",
        "Write one JSON line per message and per session; SIGHUP reopens the file.",
        "events.jsonl",
        classic=False,
    ),
    Option(
        "record",
        "0",
        "0 (off) to 100000",
        "Keep the last N messages (with their headers, never the body) for GET /messages.",
        "100",
        classic=False,
    ),
    Option(
        "state_url",
        "(none: state kept by this server)",
        "redis://[:PASSWORD@]HOST[:PORT][/DB], rediss://... or unix:///PATH[?db=N]",
        "Keep rule state (counts, greylist entries, spent rules) in Redis, shared by every"
        " server that points at it.",
        "redis://127.0.0.1:6379/0",
        classic=False,
    ),
)

OPTION_NAMES: tuple[str, ...] = tuple(option.name for option in OPTIONS)


def _tokens(name: str) -> frozenset[str]:
    return frozenset(word for word in re.split(r"[^a-z0-9]+", name.lower()) if word)


def _did_you_mean(key: str) -> str | None:
    """The option ``key`` was most likely meant to be, if any is close enough.

    Two ways, best first: the same words in another order or case
    (``listen_tls`` -> ``tls_listen``, ``Mode`` -> ``mode``), then the closest
    spelling (``tiemout`` -> ``timeout``), which difflib finds character by
    character and so misses swapped words.
    """
    words = _tokens(key)
    for name in OPTION_NAMES:
        if _tokens(name) == words:
            return name
    close = difflib.get_close_matches(key.lower(), OPTION_NAMES, n=1)
    return close[0] if close else None


def unknown_key_message(key: str) -> str:
    """The message for a key that is not an option, with a "did you mean" hint."""
    close = _did_you_mean(key)
    hint = f" (did you mean {close!r}?)" if close else ""
    return f"unknown key {key!r}{hint}; the valid keys are: {', '.join(OPTION_NAMES)}"


def format_options() -> str:
    """The option list as ``blackhole_config`` prints it.

    Every line is a comment, so the output is itself a valid (empty)
    configuration file: ``blackhole_config > blackhole.conf`` gives a starting
    point with every option documented and none set.
    """
    lines = [
        "# Blackhole configuration options.",
        "# One 'key = value' per line; '#' starts a comment; quotes around values are removed.",
        "# Options marked [new] are not known to Blackhole 2.1.19.",
        "",
    ]
    for option in OPTIONS:
        marker = "" if option.classic else "  [new]"
        lines += [
            f"# {option.name}{marker}",
            f"#   {option.meaning}",
            f"#   values:  {option.values}",
            f"#   default: {option.default}",
            f"#{option.name} = {option.example}",
            "",
        ]
    return "\n".join(lines)
