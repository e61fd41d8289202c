"""The floor, built the way the Blackhole it is compared with is built.

``floor.py`` run by the interpreter costs more than the same code compiled: in
callgrind, 85,700 instructions a message against 68,500 (1 KB, a new
connection each). Measured next to a compiled worker, the interpreted floor
would hide a fifth of what Python on uvloop can do. So where this
interpreter's Blackhole is compiled (the ``.venv-mypyc`` build), the floor is
compiled too, by mypyc (which comes with mypy, a test requirement), into the
run's own directory; elsewhere it runs as it is.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


class FloorBuildError(RuntimeError):
    """mypyc could not compile floor.py."""


def blackhole_compiled() -> bool:
    """Whether this interpreter's Blackhole is the compiled build."""
    spec = importlib.util.find_spec("blackhole.server.connection")
    return spec is not None and spec.origin is not None and not spec.origin.endswith(".py")


def floor_argv(workdir: Path, args: list[str]) -> tuple[list[str], str]:
    """The command that runs the floor with ``args``, and how it was built."""
    if not blackhole_compiled():
        return [sys.executable, str(BENCH_DIR / "floor.py"), *args], "interpreted"
    return compiled_floor_argv(workdir, args), "compiled by mypyc"


def compiled_floor_argv(workdir: Path, args: list[str]) -> list[str]:
    """The floor compiled by mypyc (once per ``workdir``), run with ``args``."""
    built = workdir / "floor-mypyc"
    if not any(built.glob("floor.*.so")):
        _compile(built)
    # The compiled module alone in its directory: nothing else to import as
    # "floor" first.
    run = f"import sys; sys.path.insert(0, {str(built)!r}); import floor; floor.main(sys.argv[1:])"
    return [sys.executable, "-c", run, *args]


def _compile(built: Path) -> None:
    if importlib.util.find_spec("mypyc") is None:
        raise FloorBuildError("the floor needs mypyc to match the compiled build: pip install mypy")
    built.mkdir(parents=True, exist_ok=True)
    source = built / "floor.py"
    shutil.copyfile(BENCH_DIR / "floor.py", source)
    done = subprocess.run(
        [sys.executable, "-m", "mypyc", "floor.py"],
        cwd=built,
        capture_output=True,
        text=True,
        check=False,
    )
    source.unlink()
    if done.returncode != 0:
        raise FloorBuildError(f"mypyc could not compile floor.py:\n{done.stdout}{done.stderr}")
