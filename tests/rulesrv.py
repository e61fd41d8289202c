"""Servers with rules, for the end-to-end rules tests."""

from __future__ import annotations

from pathlib import Path

from tests.e2e import Factory, start
from tests.serverproc import ServerProcess


def rules_server(
    factory: Factory, directory: Path, rules: str, extra: str = "", *args: str, workers: int = 1
) -> ServerProcess:
    """A server (one worker unless told) on an ephemeral port with ``rules`` as its rules file."""
    path = directory / "rules.toml"
    path.write_text(rules)
    timeout = "" if "timeout" in extra else "timeout = 30\n"
    head = f"listen = 127.0.0.1:0\nworkers = {workers}\ngrace_period = 1\n{timeout}"
    text = f"{head}rules = {path}\n{extra}"
    return start(factory, directory, text, *args)
