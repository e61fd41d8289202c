"""The floor, built the way the Blackhole it is compared with is built.

``floor.py`` run by the interpreter costs more than the same code compiled: in
callgrind, 85,700 instructions a message against 68,500 (1 KB, a new
connection each). Measured next to a compiled worker, the interpreted floor
would hide a fifth of what Python on uvloop can do. So the floor can be
compiled too, by mypyc (which comes with mypy, a test requirement), into the
run's own directory: ``worker_cost.py`` compiles it where its interpreter's
Blackhole is the compiled build (``.venv-mypyc``), and ``run.py`` runs it
compiled as the server ``floor@mypyc`` (by ``.venv-mypyc``'s interpreter),
as it is as ``floor``.
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
    """The floor for this interpreter's build, run with ``args``, and how it is built."""
    if not blackhole_compiled():
        return interpreted_floor_argv(sys.executable, args), "interpreted"
    return compiled_floor_argv(sys.executable, workdir, args), "compiled by mypyc"


def interpreted_floor_argv(python: str, args: list[str]) -> list[str]:
    return [python, str(BENCH_DIR / "floor.py"), *args]


def compiled_floor_argv(python: str, workdir: Path, args: list[str]) -> list[str]:
    """The floor compiled by ``python``'s mypyc (once per ``workdir``), run with ``args``."""
    built = workdir / "floor-mypyc"
    if not any(built.glob("floor.*.so")):
        _compile(python, built)
    # The compiled module alone in its directory: nothing else to import as
    # "floor" first.
    run = f"import sys; sys.path.insert(0, {str(built)!r}); import floor; floor.main(sys.argv[1:])"
    return [python, "-c", run, *args]


def _compile(python: str, built: Path) -> None:
    built.mkdir(parents=True, exist_ok=True)
    source = built / "floor.py"
    shutil.copyfile(BENCH_DIR / "floor.py", source)
    done = subprocess.run(
        [python, "-m", "mypyc", "floor.py"], cwd=built, capture_output=True, text=True, check=False
    )
    source.unlink()
    if done.returncode != 0:
        raise FloorBuildError(
            f"{python} could not compile floor.py with mypyc (pip install mypy):\n"
            f"{done.stdout}{done.stderr}"
        )
