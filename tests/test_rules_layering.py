"""rules/ is pure: no clock, no randomness, no event loop, no sockets of its own.

Time comes in as `now`, chance from a keyed hash of the seed, so a decision
can be replayed; and it stays below the adapter: it imports neither the
server, the supervisor nor the config loader (they use it, not the reverse).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import blackhole.rules

RULES = Path(blackhole.rules.__file__).parent
FORBIDDEN = {"asyncio", "socket", "ssl", "time", "random", "selectors", "threading", "os"}
FORBIDDEN_INTERNAL = ("blackhole.server", "blackhole.supervisor", "blackhole.config")


def imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(RULES.glob("*.py")), ids=lambda p: p.name)
def test_rules_modules_are_pure(path: Path) -> None:
    found = imports(path)
    assert not {name.split(".")[0] for name in found} & FORBIDDEN
    assert not [name for name in found if name.startswith(FORBIDDEN_INTERNAL)]


@pytest.mark.parametrize("path", sorted(RULES.glob("*.py")), ids=lambda p: p.name)
def test_rules_modules_stay_small(path: Path) -> None:
    # ARCHITECTURE.md: about 400 lines is the sign that a module needs splitting.
    assert len(path.read_text("utf-8").splitlines()) <= 400
