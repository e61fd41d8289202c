"""Servers with rules, for the end-to-end rules tests."""

from __future__ import annotations

from pathlib import Path

from tests.e2e import Factory, start
from tests.serverproc import ServerProcess


def rules_server(
    factory: Factory, directory: Path, rules: str, extra: str = "", *args: str
) -> ServerProcess:
    """A one-worker server on an ephemeral port with ``rules`` as its rules file."""
    path = directory / "rules.toml"
    path.write_text(rules)
    timeout = "" if "timeout" in extra else "timeout = 30\n"
    text = f"listen = 127.0.0.1:0\nworkers = 1\ngrace_period = 1\n{timeout}rules = {path}\n{extra}"
    return start(factory, directory, text, *args)
