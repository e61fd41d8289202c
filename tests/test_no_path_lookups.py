"""The suite runs the interpreter it was started with, never one found on PATH.

On a fresh machine (CI) no virtual environment is activated: ``python3`` on
PATH is the system interpreter, without Blackhole installed, and the
``blackhole``, ``blackhole_config`` and ``pytest`` commands are not on PATH
at all. Tests use ``sys.executable`` (or the scripts next to it) instead.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
# Commands that only a venv puts on PATH, or that PATH resolves to the wrong Python.
_FOUND_ON_PATH = {"python", "python3", "blackhole", "blackhole_config", "pytest", "pip", "pip3"}
_RUNNERS = {"run", "Popen", "call", "check_call", "check_output", "getoutput", "system", "which"}
_RUNNERS |= {"execv", "execvp", "execvpe", "execl", "execlp", "spawnlp", "spawnvp"}


def _bare(value: object) -> bool:
    if not isinstance(value, str) or not value.strip():
        return False
    word = value.split()[0]
    return word in _FOUND_ON_PATH or word.startswith("python3.")


def offences(source: str) -> list[int]:
    """Lines where an argument list or a runner call starts with a bare command."""
    found = []
    for node in ast.walk(ast.parse(source)):
        first: ast.expr | None = None
        if isinstance(node, ast.List | ast.Tuple) and node.elts:
            first = node.elts[0]
        elif isinstance(node, ast.Call) and node.args:
            name = node.func.attr if isinstance(node.func, ast.Attribute) else None
            if isinstance(node.func, ast.Name):
                name = node.func.id
            if name in _RUNNERS:
                first = node.args[0]
        if isinstance(first, ast.Constant) and _bare(first.value):
            found.append(node.lineno)
    return found


def test_the_scanner_finds_bare_commands() -> None:
    assert offences('subprocess.run(["python3", "-m", "blackhole"])') == [1]
    assert offences('tool(("blackhole", "-t"))') == [1]
    assert offences('subprocess.run("pytest -q", shell=True)') == [1]
    assert offences('shutil.which("blackhole_config")') == [1]
    assert offences('subprocess.run([sys.executable, "-m", "blackhole"])') == []
    assert offences('logging.getLogger("blackhole")') == []


def test_no_test_runs_a_command_from_path_that_a_venv_provides() -> None:
    found = {
        str(path.relative_to(TESTS)): lines
        for path in sorted(TESTS.rglob("*.py"))
        if path.name != Path(__file__).name and (lines := offences(path.read_text()))
    }
    assert not found, f"use sys.executable instead (file: lines): {found}"
