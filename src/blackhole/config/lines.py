"""The lines of a classic config file: ``key = value``, comments and quotes.

- one ``key = value`` per line; blank lines are fine;
- ``#`` starts a comment, at the start of a line or after a value;
- a value wrapped in single or double quotes loses the quotes (and may then
  contain ``#``);
- keys are lowercase and case-sensitive.

Where the classic loader was lax, this one is strict, because a sink that
silently runs with a setting you did not mean makes a load test lie: unknown
keys, a key given twice, a line without ``=`` and empty values are problems.
"""

from __future__ import annotations

from dataclasses import dataclass

from blackhole.config.options import OPTION_NAMES, unknown_key_message


@dataclass(frozen=True, slots=True)
class Setting:
    line: int
    value: str


class Problems:
    """Problems with their line numbers, reported sorted by line as ``FILE:LINE: message``."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self._items: list[tuple[int, str]] = []

    def add(self, line: int, message: str) -> None:
        self._items.append((line, message))

    def __bool__(self) -> bool:
        return bool(self._items)

    def messages(self) -> list[str]:
        # By line only: the sort is stable, so problems on one line keep the
        # order they were found in (the entries of a listen line in file order).
        ordered = sorted(self._items, key=lambda item: item[0])
        return [f"{self.filename}:{line}: {message}" for line, message in ordered]


def split_line(text: str) -> tuple[str, str] | str | None:
    """One line -> ``(key, value)``, ``None`` for nothing, or a problem message."""
    stripped = text.strip()
    if not stripped or stripped.startswith("#"):
        return None
    key, equals, rest = stripped.partition("=")
    if not equals or "#" in key:
        content = stripped.split("#", 1)[0].strip()
        return f"expected 'key = value', found {content!r}"
    key, rest = key.strip(), rest.strip()
    if not key:
        return "there is no key before '='"
    if rest[:1] in {'"', "'"}:
        quote = rest[0]
        close = rest.find(quote, 1)
        if close == -1:
            return f"{key} has an opening {quote} without a closing one"
        value, after = rest[1:close], rest[close + 1 :].strip()
        if after and not after.startswith("#"):
            return f"{key} has text after its closing quote: {after!r}"
        value = value.strip()
    else:
        value = rest.split("#", 1)[0].strip()
    return key, value


def read_settings(text: str, problems: Problems) -> dict[str, Setting]:
    """The settings of a file's text, by key; line problems go to ``problems``."""
    settings: dict[str, Setting] = {}
    for number, line in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        split = split_line(line)
        if split is None:
            continue
        if isinstance(split, str):
            problems.add(number, split)
            continue
        key, value = split
        if key not in OPTION_NAMES:
            problems.add(number, unknown_key_message(key))
        elif key in settings:
            first = settings[key].line
            problems.add(number, f"{key} is set twice, on lines {first} and {number}; keep one")
        elif not value:
            problems.add(number, f"{key} has no value (remove the line to use the default)")
        else:
            settings[key] = Setting(number, value)
    return settings
