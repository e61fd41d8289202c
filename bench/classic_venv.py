"""The classic Blackhole 2.1.19 from PyPI, in a private venv built on first use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# The classic Blackhole: its last release, on uvloop.
# uvloop is pinned below 0.22: from 0.22 on, uvloop's policy raises in
# get_event_loop() when no loop is set, which classic's supervisor calls at start-up
# ("RuntimeError: There is no current event loop in thread 'MainThread'").
CLASSIC_REQUIREMENTS = ("blackhole==2.1.19", "uvloop==0.21.0")
CLASSIC_VERSION = "2.1.19"


class VenvError(RuntimeError):
    """The classic Blackhole's venv could not be built."""


_classic_python: dict[Path, Path | VenvError] = {}


def classic_python(venv: Path) -> Path:
    """The Python of a venv holding classic Blackhole and uvloop; built on first use.

    The venv is private (classic Blackhole is also called ``blackhole`` and must
    not meet this checkout's package) and reused by later runs when it already
    holds the pinned versions. An install failure is remembered for the run.
    """
    cached = _classic_python.get(venv)
    if isinstance(cached, VenvError):
        raise cached
    if cached is not None:
        return cached
    python = venv / "bin" / "python"
    verify = [
        str(python), "-c",
        "import blackhole, uvloop; "
        f"assert blackhole.__version__ == {CLASSIC_VERSION!r}, blackhole.__version__",
    ]  # fmt: skip
    install = [
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         *CLASSIC_REQUIREMENTS],
        verify,
    ]  # fmt: skip

    def run(argv: list[str], timeout: float) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            argv, capture_output=True, timeout=timeout, env=classic_env(), check=False
        )

    try:
        if not python.exists() or run(verify, 60).returncode:
            print(f"  classic: installing {' '.join(CLASSIC_REQUIREMENTS)} in {venv}", flush=True)
            for step in install:
                done = run(step, 600)
                if done.returncode:
                    tail = (done.stderr or done.stdout).decode(errors="replace").strip()
                    raise VenvError(f"{' '.join(step[:4])} failed: {tail[-400:]}")
    except (VenvError, OSError, subprocess.TimeoutExpired) as exc:
        error = exc if isinstance(exc, VenvError) else VenvError(f"venv {venv}: {exc}")
        _classic_python[venv] = error
        raise error from None
    _classic_python[venv] = python
    return python


def classic_env() -> dict[str, str]:
    """Our environment minus what would let the venv see this checkout's blackhole."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
