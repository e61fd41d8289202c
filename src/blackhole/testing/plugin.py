"""The pytest plugin: ``blackhole`` and ``blackhole_factory`` fixtures, ``blackhole`` marker.

Registered through the ``pytest11`` entry point, so installing Blackhole is
enough. Under pytest-xdist each worker process is its own test session and
so runs its own server. Async tests (pytest-asyncio, anyio) use the same
fixtures: they are plain synchronous ones, and ``Blackhole.wait_for_async``
waits without blocking the event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from blackhole.testing.server import Blackhole

MARKER = "blackhole"

BlackholeFactory = Callable[..., Blackhole]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**options): the `blackhole` fixture of this test is a server of its own,"
        " started with these options (the config file's keys)",
    )


@pytest.fixture(scope="session")
def _blackhole_session() -> Iterator[Blackhole]:
    # Every listener, so that any test can reach SMTP, SMTPS and LMTP.
    with Blackhole(lmtp=True) as server:
        yield server


@pytest.fixture
def blackhole_factory() -> Iterator[BlackholeFactory]:
    """``blackhole_factory(**options)``: a started server of its own, stopped after the test."""
    started: list[Blackhole] = []

    def factory(**options: Any) -> Blackhole:
        server = Blackhole(**options).start()
        started.append(server)
        return server

    yield factory
    for server in reversed(started):
        server.stop()


@pytest.fixture
def blackhole(request: pytest.FixtureRequest) -> Iterator[Blackhole]:
    """A running server with no API rules, no records and zeroed counters.

    One server for the whole session, cleaned before each test; with
    ``@pytest.mark.blackhole(**options)`` a server of the test's own with
    those options instead.
    """
    marker = request.node.get_closest_marker(MARKER)
    if marker is not None:
        if marker.args:
            raise pytest.UsageError(f"@pytest.mark.{MARKER} takes keyword options only")
        with Blackhole(**marker.kwargs) as own:
            yield own
        return
    shared: Blackhole = request.getfixturevalue("_blackhole_session")
    shared.clear_rules()
    shared.reset()
    yield shared
