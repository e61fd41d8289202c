"""Every example of docs/testing.md runs as the page shows it, and passes mypy --strict.

The examples are whole test modules; they run in a pytest of their own
(pytester, in a subprocess) with nothing but the installed plugin.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "testing.md"
_EXAMPLE = re.compile(r"<!-- example: ([\w-]+) -->\n```python\n(.*?)```", re.DOTALL)
# These read what arrived (bh.messages), which needs the server's record key.


def examples() -> dict[str, str]:
    return dict(_EXAMPLE.findall(DOC.read_text()))


def test_every_example_the_brief_names_is_there() -> None:
    assert set(examples()) == {
        "smtplib", "aiosmtplib", "retry-451", "greylisting", "starttls", "lmtp",
    }  # fmt: skip


def test_every_example_passes(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
    runnable = examples()
    pytester.makepyfile(**{f"test_{name.replace('-', '_')}": t for name, t in runnable.items()})
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=300)
    result.assert_outcomes(passed=len(runnable))


def test_examples_pass_mypy_strict(tmp_path: Path) -> None:
    for name, text in examples().items():
        (tmp_path / f"test_{name.replace('-', '_')}.py").write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "MYPYPATH": str(ROOT / "src")},
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
