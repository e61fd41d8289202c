"""Certificate files for the workers, in a directory the supervisor owns.

Workers build their own TLS context (an ``SSLContext`` cannot be passed to
another process) and run as the unprivileged ``user``, who often cannot read
the key (``/etc/ssl/private`` is root's). So while the supervisor can still
read them it copies the certificate, key and DH parameters into a private
directory (mode 0700, files 0600), hands that directory to the user it is
about to become, checks the copies load as a pair, and passes their paths.
Without a configured certificate it makes a self-signed one there instead.
Listeners with their own ``cert=``/``key=`` get their copies the same way
(``prepare_listeners``), one set per distinct pair.

Each ``prepare`` writes a new generation subdirectory, so that a worker
loading the files during a reload never sees the new certificate with the
old key. Everything is removed at exit.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from blackhole.config.model import Config
from blackhole.errors import ConfigError
from blackhole.server.tls import build_server_context, generate_self_signed
from blackhole.supervisor.leftovers import PrivateDirectory
from blackhole.supervisor.messages import TLSFiles

log = logging.getLogger(__name__)


def _read(path: str, what: str, who: str | None) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        hint = f" by user {who}, which the server now runs as" if who else ""
        raise ConfigError(f"cannot read TLS {what} {path}{hint}: {exc.strerror or exc}") from None


_PREFIX = "blackhole-tls-"


class TLSStore:
    """Owns the private directory; ``prepare`` returns the files for a config."""

    def __init__(self, parent: str | None = None) -> None:
        self._parent = parent
        self._directory: PrivateDirectory | None = None  # made when first needed: no TLS, none
        self._generation = 0
        self._self_signed: tuple[str, bytes, bytes] | None = None  # mailname, cert, key
        # Set when files are read as an unprivileged user: named in errors.
        self.who: str | None = None
        self._owner: tuple[int, int] | None = None

    @property
    def root(self) -> Path:
        if self._directory is None:
            parent = Path(self._parent or tempfile.gettempdir())
            # A later start removes it if this supervisor is killed outright.
            self._directory = PrivateDirectory(_PREFIX, parent)
            if self._owner is not None:
                os.chown(self._directory.path, *self._owner)
        return self._directory.path

    def _write(self, directory: Path, name: str, data: bytes) -> str:
        path = directory / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return str(path)

    def prepare(self, config: Config, mailname: str) -> TLSFiles | None:
        """Copy (or make) the files for ``config`` and check that they load.

        Raises ``ConfigError`` for an unreadable or unusable file; the
        previous generation is left untouched, so a reload can keep it.
        """
        if not config.tls_needed:
            return None
        if config.tls_cert is not None:
            cert = _read(config.tls_cert, "certificate", self.who)
            key_path = config.tls_key or config.tls_cert
            key = _read(key_path, "key", self.who)
        else:
            cert, key = self._self_signed_pair(mailname)
        return self._store(config, cert, key, config.tls_cert, config.tls_key or config.tls_cert)

    def prepare_listeners(self, config: Config) -> tuple[tuple[tuple[str, str], TLSFiles], ...]:
        """Copy and check the files of every listener's ``cert=``/``key=``:
        ((cert, key) as configured, the copies) for each distinct pair."""
        prepared = []
        for cert_path, key_path in config.listener_tls:
            cert = _read(cert_path, "certificate", self.who)
            key = _read(key_path, "key", self.who)
            prepared.append(
                ((cert_path, key_path), self._store(config, cert, key, cert_path, key_path))
            )
        return tuple(prepared)

    def _store(
        self, config: Config, cert: bytes, key: bytes, cert_name: str | None, key_name: str | None
    ) -> TLSFiles:
        """Write one set of files in a new generation directory and check that they load."""
        dhparams = (
            _read(config.tls_dhparams, "dhparams", self.who)
            if config.tls_dhparams is not None
            else None
        )
        self._generation += 1
        directory = self.root / str(self._generation)
        directory.mkdir(mode=0o700)
        try:
            files = TLSFiles(
                cert=self._write(directory, "cert.pem", cert),
                key=self._write(directory, "key.pem", key),
                dhparams=self._write(directory, "dhparams.pem", dhparams) if dhparams else None,
                less_secure=config.less_secure,
            )
        except OSError as exc:
            raise ConfigError(f"cannot write TLS files in {directory}: {exc}") from None
        try:
            build_server_context(files.cert, files.key, files.dhparams, files.less_secure)
        except ConfigError as exc:
            shutil.rmtree(directory, ignore_errors=True)
            # The copies have our names; the user knows the files by theirs.
            problems = [
                p.replace(files.cert, cert_name or "(self-signed)")
                .replace(files.key, key_name or "(self-signed)")
                .replace(files.dhparams or "\0", config.tls_dhparams or "")
                for p in exc.problems
            ]
            raise ConfigError(problems) from None
        return files

    def _self_signed_pair(self, mailname: str) -> tuple[bytes, bytes]:
        # Kept across reloads while the mail name stays: a client that
        # pinned the certificate of a test server does not break on SIGHUP.
        if self._self_signed is None or self._self_signed[0] != mailname:
            with tempfile.TemporaryDirectory(dir=self.root) as scratch:
                cert_path, key_path = generate_self_signed(mailname, Path(scratch))
                self._self_signed = (mailname, cert_path.read_bytes(), key_path.read_bytes())
            log.info("no tls_cert configured: using a self-signed certificate for %s", mailname)
        return self._self_signed[1], self._self_signed[2]

    def hand_over(self, uid: int, gid: int) -> None:
        """Give the directory to the user the server is about to become."""
        self._owner = (uid, gid)
        if self._directory is None:
            return
        for directory, _dirs, names in os.walk(self._directory.path):
            os.chown(directory, uid, gid)
            for name in names:
                os.chown(Path(directory) / name, uid, gid)

    def cleanup(self) -> None:
        if self._directory is not None:
            self._directory.remove()
