"""Shared fixtures: certificates made in the test run, a running server, bench/ importable."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.certs import self_signed
from tests.serverproc import ServerProcess, start_server


@pytest.fixture(scope="session")
def cert_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and key for localhost, made for this run."""
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str) -> Path:
        path = tmp_path / "blackhole.conf"
        path.write_text(text)
        return path

    return write


@pytest.fixture
def short_tmpdir() -> Iterator[Path]:
    """A TMPDIR of the test's own (no other test's start sweeps it), short
    enough for the hub's socket path (a long one falls back to /tmp)."""
    directory = Path(tempfile.mkdtemp(prefix="bh-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def server_factory() -> Iterator[Callable[..., ServerProcess]]:
    """Start servers; every one still running at the end is stopped."""
    started: list[ServerProcess] = []

    def factory(config: Path | None, *args: str, **kwargs: object) -> ServerProcess:
        server = start_server(config, *args, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield factory
    for server in started:
        if server.proc.poll() is None:
            server.stop()


@pytest.fixture
def server(
    server_factory: Callable[..., ServerProcess],
    write_config: Callable[[str], Path],
    cert_pair: tuple[Path, Path],
) -> ServerProcess:
    """A server with a plain (STARTTLS) and an SMTPS listener on ephemeral ports."""
    cert, key = cert_pair
    config = write_config(
        f"listen = 127.0.0.1:0\ntls_listen = 127.0.0.1:0\n"
        f"tls_cert = {cert}\ntls_key = {key}\ntimeout = 30\n"
    )
    return server_factory(config)


@pytest.fixture
def bench_on_path() -> Iterator[None]:
    """bench/'s modules import each other by plain name, as bench/run.py does:
    imported inside a test with bench/ on the path, and forgotten after it."""
    bench = str(Path(__file__).resolve().parent.parent / "bench")
    before = set(sys.modules)
    sys.path.insert(0, bench)
    try:
        yield
    finally:
        sys.path.remove(bench)
        for name in set(sys.modules) - before:
            if bench in str(getattr(sys.modules[name], "__file__", "")):
                del sys.modules[name]
