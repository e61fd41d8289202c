"""The container image, built from the Containerfile and run with podman.

One container, one test: building and starting it is what costs (the first
run on a machine also makes the Debian base image), so every
check runs against the same container, in the order a user meets them:
the image's metadata, health, mail over SMTP, STARTTLS and SMTPS, the
control API's token, zombie reaping as PID 1, and a draining `podman stop`.
"""

from __future__ import annotations

import json
import os
import secrets
import smtplib
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.podmanrig import IMAGE, Podman, debian_mirror, missing_tools
from tests.proctools import MAKE_ORPHAN, wait_until, zombies
from tests.test_build import MODULES, PROBE

# Warm (base image kept from an earlier run): about 15 s. Cold: debootstrap
# downloads and unpacks a Debian (one to two minutes on a busy machine).
pytestmark = [pytest.mark.container, pytest.mark.timeout(600)]

# What the image's config (deploy/container/blackhole.conf) reads, under /run/secrets.
SECRETS = ("blackhole-token", "blackhole-tls.crt", "blackhole-tls.key")
GRACE = 8  # grace_period in the image's config
UID = "10025"


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    if os.geteuid() != 0:
        pytest.skip("podman here runs as root (rootful storage and networking)")
    if missing := missing_tools():
        pytest.skip(f"not installed: {', '.join(missing)} (scripts/install-test-deps)")
    mirror = debian_mirror()
    if mirror is None:
        pytest.skip("no Debian mirror in /etc/apt sources to debootstrap the base from")
    rig = Podman(tmp_path_factory.mktemp("podman"))
    rig.ensure_base(mirror)
    rig.build()
    return rig


@dataclass
class Running:
    name: str
    token: str
    smtp: int
    smtps: int
    control: int
    pid: int  # the container's PID 1 as the host sees it


def _get(port: int, path: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - http://127.0.0.1
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""  # not listening yet


@pytest.fixture
def container(podman: Podman, cert_pair: tuple[Path, Path]) -> Iterator[Running]:
    name = f"blackhole-test-{os.getpid()}-{secrets.token_hex(3)}"
    token = secrets.token_urlsafe(16)
    cert, key = cert_pair
    contents = (token.encode(), cert.read_bytes(), key.read_bytes())
    stored = [f"{name}-{i}" for i in range(len(SECRETS))]
    for secret, data in zip(stored, contents, strict=True):
        podman.secret(secret, data)
    try:
        podman.run(
            "run", "-d", "--name", name,
            "--secret", f"{stored[0]},target={SECRETS[0]}",
            "--secret", f"{stored[1]},target={SECRETS[1]}",
            # The key readable by the image's user only, as the docs say.
            "--secret", f"{stored[2]},target={SECRETS[2]},uid={UID},mode=0400",
            "-p", "127.0.0.1::2525", "-p", "127.0.0.1::4650", "-p", "127.0.0.1::8025",
            IMAGE,
        )  # fmt: skip
        pid = int(podman.run("inspect", "--format", "{{.State.Pid}}", name).stdout)
        running = Running(
            name, token, podman.port(name, 2525), podman.port(name, 4650),
            podman.port(name, 8025), pid,
        )  # fmt: skip
        wait_until(
            lambda: _get(running.control, "/healthz")[0] == 200,
            timeout=60,
            interval=0.2,
            what=f"/healthz to answer 200 (podman logs {name})",
        )
        yield running
    finally:
        podman.remove(name, stored)


def _message() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "sender@example.test"
    message["To"] = "rcpt@example.test"
    message["Subject"] = "through the container"
    message.set_content("hello\n")
    return message


def _unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the test's own self-signed certificate
    return context


def test_image_serves_mail_answers_health_reaps_orphans_and_drains(
    podman: Podman, container: Running
) -> None:
    # The image: non-root, its three ports, a health check kept (--format docker).
    [image] = json.loads(podman.run("image", "inspect", IMAGE).stdout)
    config = image["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert set(config["ExposedPorts"]) == {"2525/tcp", "4650/tcp", "8025/tcp"}
    assert "/healthz" in " ".join(image["Healthcheck"]["Test"])
    health = podman.run("healthcheck", "run", container.name, check=False, timeout=30)
    assert health.returncode == 0, health.stdout + health.stderr + podman.logs(container.name)
    assert podman.run("exec", container.name, "id", "-u").stdout.strip() == UID
    # The compiled build: every module the accelerator lists is a C extension.
    probe = podman.run("exec", container.name, "python3", "-c", PROBE, *MODULES, timeout=30)
    paths = probe.stdout.split()
    assert len(paths) == len(MODULES) and all(p.endswith(".so") for p in paths), paths

    # The control API: health and metrics open, the rest behind the token.
    status, body = _get(container.control, "/healthz")
    assert (status, body.strip()) == (200, "ok")
    assert _get(container.control, "/metrics")[0] == 200
    assert _get(container.control, "/stats")[0] == 401
    assert _get(container.control, "/stats", container.token)[0] == 200

    # Mail: plain, STARTTLS and SMTPS.
    with smtplib.SMTP("127.0.0.1", container.smtp, timeout=10) as client:
        assert client.send_message(_message()) == {}
    with smtplib.SMTP("127.0.0.1", container.smtp, timeout=10) as client:
        client.starttls(context=_unverified())
        assert client.send_message(_message()) == {}
    with smtplib.SMTP_SSL("127.0.0.1", container.smtps, timeout=10, context=_unverified()) as c:
        assert c.send_message(_message()) == {}

    # PID 1 reaps an orphan made inside the container (MAKE_ORPHAN returns
    # once the orphan has exited: unreaped, it would be a zombie by now).
    podman.run("exec", container.name, "python3", "-c", MAKE_ORPHAN, timeout=30)
    wait_until(lambda: zombies(container.pid) == [], what="no zombie under the container's init")

    # podman stop: an idle session is told 421, and the server exits 0 well
    # within podman's timeout (it would be SIGKILLed, exit 137, past it).
    with socket.create_connection(("127.0.0.1", container.smtp), timeout=20) as idle:
        reader = idle.makefile("rb")
        assert reader.readline().startswith(b"220 ")
        idle.sendall(b"EHLO client.test\r\n")
        while not reader.readline().startswith(b"250 "):
            pass
        started = time.monotonic()
        podman.run("stop", "-t", "30", container.name, timeout=60)
        elapsed = time.monotonic() - started
        assert reader.readline().startswith(b"421 4.3.2"), "the idle session was not told 421"
    state = podman.run("inspect", "--format", "{{.State.ExitCode}}", container.name)
    logs = podman.logs(container.name)
    assert state.stdout.strip() == "0", logs
    assert elapsed < GRACE + 5, f"podman stop took {elapsed:.1f}s"
    assert "stopped" in logs


def test_debian_mirror_is_read_from_either_sources_format(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# deb http://old.example/debian bookworm main\n"
        "deb [arch=amd64] http://security.example/debian-security bookworm-security main\n"
    )
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n"
    )
    assert debian_mirror(tmp_path) == "http://mirror.example/debian"
    assert debian_mirror(tmp_path / "nothing") is None
