"""Per-listener certificates (cert=/key=): one server offers a valid, an
expired and a wrong-host certificate, made with the openssl commands that
docs/tls-and-auth.md gives, and checked with Python's ssl against the test CA.
"""

from __future__ import annotations

import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.e2e import Factory, start
from tests.smtpclient import insecure_context

DOC = Path(__file__).resolve().parent.parent / "docs" / "tls-and-auth.md"
_SCRIPT = re.compile(r"<!-- test: bad-certificates -->\n```sh\n(.*?)```", re.DOTALL)

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CA and the three certificates, made by the documented commands."""
    found = _SCRIPT.search(DOC.read_text())
    assert found is not None, "the bad-certificates recipe is missing from the docs"
    directory = tmp_path_factory.mktemp("listener-certs")
    subprocess.run(
        ["bash", "-e", "-c", found.group(1)],
        cwd=directory,
        check=True,
        capture_output=True,
        timeout=60,
    )
    return directory


def _config(certs: Path) -> str:
    pair = "cert={0}.pem key={0}.key"
    return (
        f"tls_listen = 127.0.0.1:0 {pair.format('valid')}, 127.0.0.1:0 {pair.format('expired')},"
        f" 127.0.0.1:0 {pair.format('wronghost')}\n"
        f"listen = 127.0.0.1:0 {pair.format('valid')} name=starttls, 127.0.0.1:0 name=plain\n"
    )


def _verifying(certs: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certs / "ca.pem"))


def _presented(port: int) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        insecure_context().wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def _der(path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


def _verify_error(certs: Path, port: int) -> str | None:
    """None when the handshake verifies against the test CA, else OpenSSL's reason."""
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            _verifying(certs).wrap_socket(raw, server_hostname="localhost"),
        ):
            return None
    except ssl.SSLCertVerificationError as exc:
        return exc.verify_message


def test_each_port_presents_its_own_certificate(
    server_factory: Factory, certs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(certs)  # relative cert= paths start where blackhole starts
    server = start(server_factory, certs, _config(certs))
    valid, expired, wrong = (server.port("smtps", index) for index in range(3))
    assert _presented(valid) == _der(certs / "valid.pem")
    assert _presented(expired) == _der(certs / "expired.pem")
    assert _presented(wrong) == _der(certs / "wronghost.pem")
    assert _verify_error(certs, valid) is None
    assert _verify_error(certs, expired) == "certificate has expired"
    assert "Hostname mismatch" in (_verify_error(certs, wrong) or "")


def test_a_plain_listener_with_its_own_certificate_offers_starttls_with_it(
    server_factory: Factory, certs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(certs)
    server = start(server_factory, certs, _config(certs))
    starttls, plain = server.port("smtp", 0), server.port("smtp", 1)
    with smtplib.SMTP("127.0.0.1", starttls, timeout=10) as client:
        client.starttls(context=_verifying(certs))  # verifies for 127.0.0.1
        assert client.ehlo()[0] == 250
        assert client.sock is not None
        assert client.sock.getpeercert(binary_form=True) == _der(certs / "valid.pem")  # type: ignore[attr-defined]
    # No tls_cert anywhere: the listener without cert= has no certificate to offer.
    with smtplib.SMTP("127.0.0.1", plain, timeout=10) as client:
        client.ehlo()
        assert not client.has_extn("starttls")


def test_sighup_rereads_a_listener_certificate(
    server_factory: Factory, certs: Path, tmp_path: Path
) -> None:
    cert, key = tmp_path / "listener.pem", tmp_path / "listener.key"
    shutil.copy(certs / "valid.pem", cert)
    shutil.copy(certs / "valid.key", key)
    server = start(server_factory, tmp_path, f"tls_listen = 127.0.0.1:0 cert={cert} key={key}\n")
    port = server.port("smtps")
    assert _presented(port) == _der(certs / "valid.pem")
    shutil.copy(certs / "expired.pem", cert)
    shutil.copy(certs / "expired.key", key)
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for(r"configuration reloaded \(generation 2\)")
    assert _presented(port) == _der(certs / "expired.pem")
    assert server.stop() == 0


def test_config_test_checks_each_listener_pair(certs: Path, tmp_path: Path) -> None:
    config = tmp_path / "blackhole.conf"
    config.write_text(
        f"tls_listen = 127.0.0.1:0 cert={certs / 'valid.pem'} key={certs / 'expired.key'}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "blackhole", "-t", "-c", str(config)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 64, result
    assert f"TLS certificate {certs / 'valid.pem'} and key {certs / 'expired.key'}" in (
        result.stdout + result.stderr
    )
    assert "do not match" in result.stdout + result.stderr


def test_implicit_tls_on_a_unix_socket_with_its_own_certificate(
    server_factory: Factory, certs: Path
) -> None:
    directory = Path(tempfile.mkdtemp(prefix="bh-", dir="/tmp"))  # short: socket paths
    path = directory / "smtps.sock"
    try:
        start(
            server_factory,
            directory,
            f"tls_listen = unix:{path} cert={certs / 'valid.pem'} key={certs / 'valid.key'}\n",
        )
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
            raw.settimeout(10)
            raw.connect(str(path))
            with _verifying(certs).wrap_socket(raw, server_hostname="localhost") as tls:
                assert tls.recv(4) == b"220 "
    finally:
        shutil.rmtree(directory, ignore_errors=True)
