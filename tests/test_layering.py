"""ARCHITECTURE.md, "the one rule": SMTP meaning is separate from sockets.

The sans-IO core (``protocol/``) imports no asyncio, ssl, socket, time or
random: anything it needs from the outside world is injected, so a test can
drive it byte by byte and replay it exactly. ``policy/`` is pure decisions: it
may use an injected ``random.Random``, but no event loop, socket or TLS.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import blackhole

PACKAGE = Path(blackhole.__file__).parent
FORBIDDEN = {
    "protocol": {"asyncio", "ssl", "socket", "time", "random", "selectors", "threading"},
    "policy": {"asyncio", "ssl", "socket", "selectors", "threading"},
}


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports, at any depth of the file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name | ast.Attribute)
            and (getattr(node.func, "id", None) or getattr(node.func, "attr", None))
            in ("__import__", "import_module")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)  # importlib.import_module("socket") counts too
    return {name.split(".")[0] for name in names}


def _files(package: str) -> list[Path]:
    files = sorted((PACKAGE / package).glob("*.py"))
    assert files, f"no modules found in {package}/"
    return files


@pytest.mark.parametrize(
    ("package", "path"),
    [(package, path) for package in FORBIDDEN for path in _files(package)],
    ids=lambda v: v if isinstance(v, str) else v.name,
)
def test_no_io_imports(package: str, path: Path) -> None:
    bad = imported_modules(path) & FORBIDDEN[package]
    assert not bad, f"{package}/{path.name} imports {sorted(bad)}"


def test_protocol_does_not_import_server_or_policy() -> None:
    # The core is the bottom layer: the adapter and the policy use it, not the reverse.
    for path in _files("protocol"):
        for name in _dotted_imports(path):
            assert not name.startswith(("blackhole.server", "blackhole.policy")), (
                f"protocol/{path.name} imports {name}"
            )


def test_policy_does_not_import_server() -> None:
    for path in _files("policy"):
        for name in _dotted_imports(path):
            assert not name.startswith("blackhole.server"), f"policy/{path.name} imports {name}"


def _dotted_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_scanner_sees_every_kind_of_import(tmp_path: Path) -> None:
    # The check must be able to fail: each form of import is noticed.
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os, asyncio.events\n"
        "from socket import socket\n"
        "def f():\n"
        "    import ssl\n"
        "    __import__('time')\n"
        "    importlib.import_module('random')\n"
        "from . import sibling\n",
        "utf-8",
    )
    assert imported_modules(sample) == {"os", "asyncio", "socket", "ssl", "time", "random"}
