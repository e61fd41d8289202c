"""The pytest plugin, as a user meets it: generated test modules run by pytester.

Each run is a separate ``pytest`` process (``runpytest_subprocess``), so the
plugin is found through its ``pytest11`` entry point exactly as it is for a
user who only installed Blackhole.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

USING_EVERY_FIXTURE = """
import os
import smtplib

import aiosmtplib
import pytest

LOG = os.environ["PORTS_LOG"]


def note(kind, server):
    with open(LOG, "a") as log:
        log.write(f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')} {kind} {server.port}\\n")


def send(port, to="b@example.com"):
    with smtplib.SMTP("127.0.0.1", port) as client:
        return client.sendmail("a@example.com", [to], "Subject: t\\r\\n\\r\\nx\\r\\n")


def test_shared_server_takes_rules(blackhole):
    note("shared", blackhole)
    assert blackhole.rules() == []
    blackhole.add_rule({"name": "no", "at": "rcpt", "reply": "450 4.2.0 not now"})
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(blackhole.port)


def test_shared_server_is_clean_for_each_test(blackhole):
    note("shared", blackhole)
    assert blackhole.rules() == []
    assert send(blackhole.port) == {}


@pytest.mark.blackhole(max_message_size=100, lmtp=True)
def test_marker_gives_a_server_of_its_own(blackhole):
    note("marked", blackhole)
    assert blackhole.lmtp_port
    with smtplib.SMTP("127.0.0.1", blackhole.port) as client:
        with pytest.raises(smtplib.SMTPSenderRefused) as too_big:
            client.sendmail("a@example.com", ["b@example.com"], "x" * 500)
    assert too_big.value.smtp_code == 552


def test_factory_servers_have_their_own_options(blackhole_factory, blackhole):
    note("shared", blackhole)
    bouncing = blackhole_factory(tls=False, rules=[
        {"name": "all", "at": "rcpt", "reply": "550 5.1.1 no such user"}])
    note("factory", bouncing)
    assert bouncing.port != blackhole.port
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(bouncing.port)
    assert send(blackhole.port) == {}


@pytest.mark.asyncio
async def test_async_with_pytest_asyncio(blackhole):
    note("shared", blackhole)
    errors, _ = await aiosmtplib.send(
        "Subject: a\\r\\n\\r\\nx\\r\\n", sender="a@example.com", recipients=["b@example.com"],
        hostname="127.0.0.1", port=blackhole.port, start_tls=True,
        tls_context=blackhole.client_ssl_context(),
    )
    assert errors == {}


@pytest.mark.anyio
async def test_async_with_anyio(blackhole):
    note("shared", blackhole)
    errors, _ = await aiosmtplib.send(
        "Subject: a\\r\\n\\r\\nx\\r\\n", sender="a@example.com", recipients=["b@example.com"],
        hostname="127.0.0.1", port=blackhole.port, start_tls=False,
    )
    assert errors == {}
"""

WRITTEN_TO_FAIL = """
import smtplib


def test_expects_two_messages_but_one_is_sent(blackhole):
    with smtplib.SMTP("127.0.0.1", blackhole.port) as client:
        client.sendmail("a@example.com", ["b@example.com"], "Subject: t\\r\\n\\r\\nx\\r\\n")
    blackhole.wait_for(messages=2, timeout=0.5)
"""


def _run(pytester: pytest.Pytester, source: str, *args: str) -> tuple[pytest.RunResult, Path]:
    pytester.makepyfile(test_generated=textwrap.dedent(source))
    log = pytester.path / "ports.log"
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=300)
    return result, log


def _ports(log: Path) -> dict[str, dict[str, set[int]]]:
    seen: dict[str, dict[str, set[int]]] = {}
    for line in log.read_text().splitlines():
        worker, kind, port = line.split()
        seen.setdefault(worker, {}).setdefault(kind, set()).add(int(port))
    return seen


@pytest.fixture(autouse=True)
def inner_environment(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """The generated runs are top-level pytest runs, even when this one is an xdist worker."""
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PORTS_LOG", str(pytester.path / "ports.log"))


@pytest.fixture
def anyio_fixture_conftest(pytester: pytest.Pytester) -> None:
    # anyio's marker runs each test once per anyio_backend; asyncio is enough here.
    pytester.makeconftest(
        "import pytest\n\n@pytest.fixture\ndef anyio_backend():\n    return 'asyncio'\n"
    )


@pytest.mark.usefixtures("anyio_fixture_conftest")
def test_every_fixture_and_the_marker(pytester: pytest.Pytester) -> None:
    result, log = _run(pytester, USING_EVERY_FIXTURE)
    result.assert_outcomes(passed=6)
    seen = _ports(log)["main"]
    assert len(seen["shared"]) == 1  # one server for the session
    assert not seen["shared"] & (seen["marked"] | seen["factory"])


@pytest.mark.usefixtures("anyio_fixture_conftest")
def test_under_xdist_each_worker_has_its_own_server(pytester: pytest.Pytester) -> None:
    result, log = _run(pytester, USING_EVERY_FIXTURE, "-p", "xdist", "-n", "2", "--dist", "load")
    result.assert_outcomes(passed=6)
    seen = _ports(log)
    shared = [ports["shared"] for ports in seen.values() if "shared" in ports]
    assert all(len(ports) == 1 for ports in shared)  # one per worker...
    assert len(set().union(*shared)) == len(shared)  # ...and not the same one


def test_a_failing_test_says_what_arrived_and_what_was_expected(
    pytester: pytest.Pytester,
) -> None:
    result, _ = _run(pytester, WRITTEN_TO_FAIL)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*TimeoutError: expected 2 messages within 0.5s; * arrived:*"])
    result.stdout.fnmatch_lines(["*<a@example.com> -> b@example.com: 250 2.0.0*"])


def test_the_marker_takes_keywords_only(pytester: pytest.Pytester) -> None:
    result, _ = _run(
        pytester,
        "import pytest\n\n@pytest.mark.blackhole('bounce')\ndef test_x(blackhole):\n    pass\n",
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*blackhole takes keyword options only*"])


def test_the_plugin_is_registered_by_entry_point(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.blackhole(**options):*"])
    fixtures = pytester.runpytest_subprocess("--fixtures")
    fixtures.stdout.fnmatch_lines(["blackhole_factory*", "blackhole *"])
