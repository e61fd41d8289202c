"""A private Postfix instance that relays every message to the Blackhole under test.

Postfix is the sender here: tests inject mail with its ``sendmail`` and read
what its SMTP client did from its log (``status=sent``, ``status=deferred``
with the reply text), the way an operator would judge a relay. The instance
is private: its own config directory (``postfix -c DIR``), queue and data
directories, log file and ``syslog_name``, all under one temporary directory.
It never reads or writes /etc/postfix or the system queue, and it listens on
no port at all (mail enters through the ``sendmail``/``postdrop``/``pickup``
path), so any number of instances run side by side under pytest-xdist.

Postfix's master runs as root and its daemons as ``mail_owner`` (``postfix``)
with the ``setgid_group`` (``postdrop``), which Debian's package creates: the
tests need root (CI runs as root) and the ``postfix`` package
(scripts/install-test-deps installs it).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.proctools import alive, children, wait_until

# Where Debian installs the Postfix commands, in case root's PATH lacks sbin.
_SBIN = "/usr/sbin:/usr/bin:/sbin:/bin"
MAIL_OWNER = "postfix"  # Postfix's default mail_owner, the user its daemons run as

# Every service a relay-only instance needs. chroot is "n" everywhere: a
# chroot jail would need copies of /etc files under the private queue
# directory. postlogd serves maillog_file (Postfix >= 3.4), so the tests read
# a plain file and need no syslog daemon. No smtpd: mail comes in by pickup.
_MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
postlog   unix-dgram n  -       n       -       1       postlogd
"""

TLS_LEVELS = ("none", "may", "encrypt")

# One delivery attempt of one recipient, as the smtp client logs it, e.g.
#   4F1C2: to=<b@example.com>, relay=127.0.0.1[127.0.0.1]:2525, delay=0.1,
#   delays=0.05/0.01/0.02/0.02, dsn=2.0.0, status=sent (250 2.0.0 OK: queued as X)
_DELIVERY_RE = re.compile(
    r"/[\w-]+\[\d+\]: (?P<queue_id>\w+): to=<(?P<recipient>[^>]*)>,"
    r"(?: orig_to=<[^>]*>,)? relay=(?P<relay>[^,]+),.*? dsn=(?P<dsn>[\d.]+),"
    r" status=(?P<status>\w+) \((?P<text>.*)\)$"
)


@dataclass(frozen=True)
class Delivery:
    """One ``to=<...>`` log record: the outcome of one attempt for one recipient."""

    queue_id: str
    recipient: str
    relay: str  # "127.0.0.1[127.0.0.1]:PORT", or "none" when no connection was made
    dsn: str  # RFC 3463 enhanced status code, e.g. "2.0.0", "4.4.1"
    status: str  # sent, deferred, bounced, expired
    text: str  # the reason, e.g. "250 2.0.0 OK: queued as X" or "host ... said: 451 ..."
    line: str


@dataclass(frozen=True)
class RelaySettings:
    """What a test may vary; every time is in whole seconds.

    Postfix wants ``queue_run_delay <= minimal_backoff_time <=
    maximal_backoff_time`` (postconf(5)); the defaults retry a deferred message
    about once a second, so a deferral-then-success test stays short.
    """

    port: int  # the Blackhole listener: relayhost = [127.0.0.1]:port
    tls_security_level: str = "none"  # none, may (opportunistic) or encrypt (mandatory)
    minimal_backoff_time: int = 1
    maximal_backoff_time: int = 2
    queue_run_delay: int = 1
    extra: Mapping[str, str] = field(default_factory=dict)  # more main.cf lines

    def __post_init__(self) -> None:
        if self.tls_security_level not in TLS_LEVELS:
            raise ValueError(f"tls_security_level must be one of {TLS_LEVELS}")
        if not 1 <= self.queue_run_delay <= self.minimal_backoff_time <= self.maximal_backoff_time:
            raise ValueError(
                "need 1 <= queue_run_delay <= minimal_backoff_time <= maximal_backoff_time"
            )


def command(name: str) -> str:
    """The absolute path of a Postfix command, or a failure that says what to install."""
    path = shutil.which(name, path=os.environ.get("PATH", "") + ":" + _SBIN)
    if path is None:
        raise AssertionError(f"{name} not found: install Postfix (scripts/install-test-deps)")
    return path


def main_cf(root: Path, syslog_name: str, settings: RelaySettings) -> str:
    """The main.cf of an instance living under ``root``."""
    params = {
        "compatibility_level": "3.6",
        "queue_directory": str(root / "queue"),
        "data_directory": str(root / "data"),
        "syslog_name": syslog_name,
        # maillog_file must start with one of these prefixes (a Postfix safety net).
        "maillog_file_prefixes": str(root),
        "maillog_file": str(root / "maillog"),
        "myhostname": "relay.postfix.test",
        "myorigin": "$myhostname",
        "mydestination": "",  # nothing is local: every recipient goes to the relayhost
        "local_recipient_maps": "",
        "alias_maps": "",
        "alias_database": "",
        "inet_interfaces": "loopback-only",
        "inet_protocols": "ipv4",
        # Brackets: connect to this address, no MX lookup (RFC 5321 section 5.1).
        "relayhost": f"[127.0.0.1]:{settings.port}",
        "smtp_tls_security_level": settings.tls_security_level,
        "smtp_tls_loglevel": "1",  # log the "TLS connection established" summary
        "minimal_backoff_time": f"{settings.minimal_backoff_time}s",
        "maximal_backoff_time": f"{settings.maximal_backoff_time}s",
        "queue_run_delay": f"{settings.queue_run_delay}s",
        **settings.extra,
    }
    return "".join(f"{key} = {value}\n" for key, value in params.items())


class PostfixRelay:
    """One private Postfix instance; use ``relay()`` to run one for a block."""

    def __init__(self, settings: RelaySettings) -> None:
        self.settings = settings
        # The daemons (user postfix) must reach the queue: not under pytest's
        # tmp_path, whose /tmp/pytest-of-root is mode 0700.
        self.root = Path(tempfile.mkdtemp(prefix="postfix-relay-"))
        self.root.chmod(0o755)
        self.config_dir = self.root / "etc"
        self.queue_dir = self.root / "queue"
        self.log_path = self.root / "maillog"
        # Unique per instance, so that a shared syslog would still tell them apart.
        self.syslog_name = "relay-" + self.root.name.removeprefix("postfix-relay-")

    # --- running --------------------------------------------------------------

    def _run(self, name: str, *args: str, stdin: bytes = b"") -> None:
        cmd = [command(name), *args]
        try:
            done = subprocess.run(cmd, input=stdin, capture_output=True, timeout=30, check=False)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"{' '.join(cmd)} hung\n{self.log_text()}") from exc
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")
            raise AssertionError(
                f"{' '.join(cmd)} exited {done.returncode}: {output}\nlog:\n{self.log_text()}"
            )

    def start(self) -> None:
        if os.geteuid() != 0:
            raise AssertionError("a private Postfix instance needs root (its master runs as root)")
        self.config_dir.mkdir()
        (self.config_dir / "main.cf").write_text(
            main_cf(self.root, self.syslog_name, self.settings)
        )
        (self.config_dir / "master.cf").write_text(_MASTER_CF)
        # `postfix start` makes the queue's subdirectories with their owners
        # (post-install create-missing) but not the queue itself, and insists
        # that data_directory belong to mail_owner.
        self.queue_dir.mkdir()
        data = self.root / "data"
        data.mkdir()
        os.chown(data, pwd.getpwnam(MAIL_OWNER).pw_uid, -1)
        self._run("postfix", "-c", str(self.config_dir), "start")

    @property
    def master_pid(self) -> int | None:
        """The pid of this instance's master (its pid file), if it was started."""
        try:
            return int((self.queue_dir / "pid" / "master.pid").read_text())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        """Stop the instance; kill whatever of it is left; remove its files."""
        try:
            master = self.master_pid
            if master is not None and alive(master):
                self._stop_master(master)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _stop_master(self, master: int) -> None:
        daemon_dir = _exe_dir(master)
        pids = [master, *children(master)]

        def gone() -> bool:
            return not any(alive(pid) for pid in pids)

        with contextlib.suppress(AssertionError):  # a failed stop: kill them below
            self._run("postfix", "-c", str(self.config_dir), "stop")
            wait_until(gone, timeout=10, what="Postfix to exit")
        for pid in pids:
            # Only a Postfix daemon: the pid may have been reused meanwhile.
            if alive(pid) and daemon_dir is not None and _exe_dir(pid) == daemon_dir:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        wait_until(gone, timeout=5, what="Postfix to die")

    # --- mail in, queue ------------------------------------------------------------

    def send(self, sender: str, recipients: Sequence[str], message: str | bytes) -> None:
        """Queue a message with Postfix's ``sendmail`` (to the pickup daemon)."""
        body = message.encode() if isinstance(message, str) else message
        # -i: a line holding a lone "." is message text, not the end of input.
        cmd = ["-C", str(self.config_dir), "-i", "-f", sender, "--", *recipients]
        self._run("sendmail", *cmd, stdin=body)

    def flush(self) -> None:
        """Retry every deferred message now (``postqueue -f``), dead destinations too."""
        self._run("postqueue", "-c", str(self.config_dir), "-f")

    # --- the log --------------------------------------------------------------------

    def log_lines(self) -> list[str]:
        """The complete lines of the log so far (a line being written is left out)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return text.split("\n")[:-1]

    def log_text(self) -> str:
        return "\n".join(self.log_lines())

    def deliveries(self, recipient: str) -> list[Delivery]:
        """Every delivery attempt logged for ``recipient``, oldest first."""
        found = []
        for line in self.log_lines():
            m = _DELIVERY_RE.search(line)
            if m and m["recipient"] == recipient:
                found.append(
                    Delivery(
                        m["queue_id"], recipient, m["relay"], m["dsn"], m["status"], m["text"], line
                    )
                )
        return found

    def wait_for(self, recipient: str, *statuses: str, timeout: float = 15.0) -> list[Delivery]:
        """Poll the log until ``recipient`` has an attempt with one of ``statuses``.

        Returns every attempt for that recipient so far, oldest first, so that
        a test can check what came before (a deferral, then the success).
        """
        wanted = " or ".join(f"status={status}" for status in statuses)

        def reached() -> list[Delivery]:
            attempts = self.deliveries(recipient)
            return attempts if any(a.status in statuses for a in attempts) else []

        try:
            return wait_until(reached, timeout, interval=0.05, what=wanted)
        except AssertionError as exc:
            raise AssertionError(f"{exc} for <{recipient}>; log:\n{self.log_text()}") from None

    def problems(self) -> list[str]:
        """Log lines where Postfix reports trouble with itself (not with a delivery)."""
        return [
            line for line in self.log_lines() if re.search(r": (warning|error|fatal|panic): ", line)
        ]


def _exe_dir(pid: int) -> Path | None:
    try:
        return Path(f"/proc/{pid}/exe").readlink().parent
    except OSError:
        return None


@contextmanager
def relay(settings: RelaySettings) -> Iterator[PostfixRelay]:
    """A started private Postfix for the block; stopped and removed after it."""
    instance = PostfixRelay(settings)
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()
