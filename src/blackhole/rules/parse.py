"""Rules from a TOML file or a JSON object into ``Rule`` values, every problem at once.

A broken rules file is refused whole, with each problem on its own line as ``file:line:
rule "name": key: what is wrong`` (or without the line for an object from the control API),
and misspelt keys get a did-you-mean. tomllib gives no line numbers for tables, so the lines
of ``[[rule]]`` headers and of the keys inside them are found by scanning the text.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from blackhole.errors import ConfigError
from blackhole.observe.layout import MAX_RULES
from blackhole.protocol.hooks import Stage, TLSFault
from blackhole.regular import read_text_file
from blackhole.rules import values
from blackhole.rules.model import Actions, Key, Matchers, Rule, Selection, Source

T = TypeVar("T")

NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")  # a label on /metrics, a path in DELETE
PORT = re.compile(r"[0-9]{1,5}")  # ASCII digits: str.isdigit() takes "²", which int() refuses
MATCHER_KEYS = (
    "listener", "client", "tls", "helo", "auth_user",
    "sender", "recipient", "header", "size", "message",
)  # fmt: skip
SELECTION_KEYS = ("probability", "every", "first", "after", "greylist", "window", "times", "key")
ACTION_KEYS = ("reply", "delay", "close", "drop", "reset", "hang", "tarpit", "after_bytes", "tls")
# A rule acts through one of these (greylist brings its own default reply), or a tls fault.
ACTING_KEYS = ("greylist", "reply", "delay", "close", "drop", "reset", "hang", "tarpit")
NO_ACTION = (
    "needs at least one action: reply, delay, close, drop, reset, hang or tarpit"
    " (or tls at starttls, or a greylist)"
)
RULE_KEYS = frozenset(("name", "at", *MATCHER_KEYS, *SELECTION_KEYS, *ACTION_KEYS))
TOP_KEYS = ("seed", "rule")
# A file rule may not take an API rule's name, nor an API rule a file rule's
# (RULES.md "Where rules come from": names are unique among the rules in force).
NAME_OF_AN_API_RULE = "name: already used by a rule added through the API"

# RULES.md "Matchers": conversation order connect < helo < starttls/auth <
# mail < rcpt < data < content < end. Stages outside it (rset, noop, vrfy,
# quit, command) take any matcher, which then holds only when its value is known.
ORDER = {
    Stage.CONNECT: 0, Stage.HELO: 1, Stage.STARTTLS: 2, Stage.AUTH: 2, Stage.MAIL: 3,
    Stage.RCPT: 4, Stage.DATA: 5, Stage.CONTENT: 6, Stage.END: 7,
}  # fmt: skip
USABLE_FROM = {
    "listener": Stage.CONNECT, "client": Stage.CONNECT, "tls": Stage.CONNECT,
    "helo": Stage.HELO, "auth_user": Stage.AUTH, "sender": Stage.MAIL,
    "recipient": Stage.RCPT, "header": Stage.CONTENT, "size": Stage.MAIL,
    "message": Stage.MAIL,
}  # fmt: skip


class RulesError(ConfigError):
    """Rules that cannot be used; ``problems`` lists every one, located."""


@dataclass(frozen=True, slots=True)
class RuleFile:
    """A parsed rules file: its own ``seed`` (if any) and its rules in order."""

    seed: int | None
    rules: tuple[Rule, ...]
    filename: str = "<rules>"  # as messages name it

    def located(self, rule: Rule) -> str:
        """Where ``rule`` is, as each problem of the file begins: ``file:line: rule "name": ``."""
        return _prefix(self.filename, rule.line, f'rule "{rule.name}"')


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def fingerprint(raw: Mapping[str, Any]) -> str:
    """A stable digest of a rule's definition; ``ttl`` is not part of it."""
    canonical = json.dumps(
        {k: v for k, v in raw.items() if k != "ttl"}, sort_keys=True, default=str
    )
    return hashlib.blake2b(canonical.encode(), digest_size=12).hexdigest()


class _Lines:
    """Where each ``[[rule]]`` header and each key inside it sits in the text."""

    _HEADER = re.compile(r"\s*\[\[\s*rule\s*\]\]")

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.headers = [i + 1 for i, line in enumerate(self.lines) if self._HEADER.match(line)]

    def rule(self, index: int) -> int | None:
        return self.headers[index] if index < len(self.headers) else None

    def key(self, index: int, key: str) -> int | None:
        start = self.rule(index)
        if start is None:
            return None
        end = self.headers[index + 1] if index + 1 < len(self.headers) else len(self.lines) + 1
        pattern = re.compile(rf"\s*(?:{re.escape(key)}|\"{re.escape(key)}\")\s*=")
        for number in range(start + 1, end):
            if pattern.match(self.lines[number - 1]):
                return number
        return start


class _RuleReader:
    """Reads one rule's table, collecting its problems with their locations."""

    def __init__(self, raw: Mapping[str, Any], locate: Callable[[str | None, str | None], str]):
        self.raw = raw
        self.locate = locate
        self.problems: list[str] = []
        name = raw.get("name")
        self.name = name if isinstance(name, str) else None

    def problem(self, key: str | None, message: str) -> None:
        name = self.name if self.name is None or NAME.fullmatch(self.name) else None
        self.problems.append(self.locate(name, key) + message)

    def get(self, key: str, convert: Callable[[Any], T]) -> T | None:
        if key not in self.raw:
            return None
        try:
            return convert(self.raw[key])
        except ValueError as exc:
            self.problem(key, str(exc))
            return None

    def read(self, source: Source, started: float | None) -> Rule | None:
        for key in self.raw:
            if key not in RULE_KEYS:
                self.problem(key, "unknown key" + did_you_mean(key, sorted(RULE_KEYS)))
        if "name" in self.raw and self.name is None:
            self.problem("name", f"{self.raw['name']!r} is not a name: use a string")
        elif self.name is None:
            self.problem("name", "required: a unique name of letters, digits, '_', '.', '-'")
        elif not NAME.fullmatch(self.name):
            self.problem("name", f"{self.name[:40]!r}: use 1 to 128 letters, digits, '_', '.', '-'")
        stage = self._stage()
        matchers = self._matchers(stage)
        selection = self._selection()
        actions = self._actions(stage)
        tls_action = "tls" in self.raw and not isinstance(self.raw["tls"], bool)
        # ``drop = false`` does nothing: no action (it would hide the rules after it).
        if not tls_action and all(self.raw.get(k, False) is False for k in ACTING_KEYS):
            self.problem(None, NO_ACTION)
        if self.problems or stage is None or self.name is None:
            return None
        fields = tuple(self.raw.items())
        return Rule(self.name, stage, matchers, selection, actions, source, fingerprint(self.raw),
                    started, fields=fields)  # fmt: skip

    def _stage(self) -> Stage | None:
        at = self.raw.get("at")
        if at is None:
            self.problem("at", "required: the stage, one of " + ", ".join(Stage))
            return None
        try:
            return Stage(str(at))
        except ValueError:
            self.problem(
                "at", f"unknown stage {at!r}" + did_you_mean(str(at), [s.value for s in Stage])
            )
            return None

    def _matchers(self, stage: Stage | None) -> Matchers:
        if stage in ORDER:
            for key, first in USABLE_FROM.items():
                is_action = key == "tls" and not isinstance(self.raw.get(key), bool)
                if key in self.raw and not is_action and ORDER[first] > ORDER[stage]:
                    self.problem(key, f"is not known yet at {stage}: usable from {first} on")
        tls = self.raw.get("tls")
        return Matchers(
            listener=self.get("listener", _listener),
            client=self.get("client", values.networks),
            tls=tls if isinstance(tls, bool) else None,
            helo=self.get("helo", values.globs),
            auth_user=self.get("auth_user", values.globs),
            sender=self.get("sender", values.globs),
            recipient=self.get("recipient", values.globs),
            header=self.get("header", _headers),
            size=self.get("size", values.size_range),
            message=self.get("message", values.message_range),
        )

    def _selection(self) -> Selection:
        key = self.get("key", _key)
        greylist = self.get("greylist", values.duration)
        if key is None:
            key = Key.TRIPLET if greylist is not None else Key.SERVER
        return Selection(
            probability=self.get("probability", _probability),
            every=self.get("every", _whole(1)),
            first=self.get("first", _whole(1)),
            after=self.get("after", _whole(0)),
            greylist=greylist,
            window=self.get("window", values.window),
            times=self.get("times", _whole(1)),
            key=key,
        )

    def _actions(self, stage: Stage | None) -> Actions:
        if "after_bytes" in self.raw and stage is not None and stage != Stage.CONTENT:
            self.problem("after_bytes", f"only at content, not at {stage}")
        tls = self.raw.get("tls")
        fault = None
        if tls is not None and not isinstance(tls, bool):
            fault = self.get("tls", _tls_fault)
            if stage is not None and stage != Stage.STARTTLS:
                self.problem("tls", f"{tls!r} is a starttls action, not usable at {stage}")
        actions = Actions(
            reply=self.get("reply", values.reply),
            delay=self.get("delay", values.delay),
            close=self.get("close", _bool) or False,
            drop=self.get("drop", _bool) or False,
            reset=self.get("reset", _bool) or False,
            hang=self.get("hang", _bool) or False,
            tarpit=self.get("tarpit", _whole(1)),
            after_bytes=self.get("after_bytes", _whole(0)) or 0,
            tls=fault,
        )
        ends = [k for k in ("close", "drop", "reset", "hang", "tls") if getattr(actions, k)]
        if len(ends) > 1:
            self.problem(None, f"{' and '.join(ends)} cannot be combined: choose one")
        if fault is not None and actions.reply is not None and actions.reply.code != 220:
            # RULES.md "tls": the fault comes after a 220 (RFC 3207 4: "220 Ready to
            # start TLS"); after any other reply the client never starts a handshake.
            self.problem("reply", f"tls = {fault.value!r} answers 220, not {actions.reply.code}")
        silent = [k for k in ("drop", "reset", "hang") if getattr(actions, k)]
        if silent and "reply" in self.raw:
            self.problem("reply", f"is never sent with {silent[0]} = true")
        return actions


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{value!r} is not true or false")
    return value


def _whole(minimum: int) -> Callable[[object], int]:
    def convert(value: object) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"{value!r} is not a whole number of at least {minimum}")
        return value

    return convert


def _probability(value: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
        raise ValueError(f"{value!r} is not a probability between 0.0 and 1.0")
    return float(value)


def _key(value: object) -> Key:
    try:
        return Key(str(value))
    except ValueError:
        raise ValueError(
            f"unknown key {value!r}" + did_you_mean(str(value), [k.value for k in Key])
        ) from None


def _tls_fault(value: object) -> TLSFault:
    try:
        return TLSFault(str(value))
    except ValueError:
        raise ValueError(f'{value!r} is not "fail" or "hang"') from None


def _listener(value: object) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536:
        return value
    if isinstance(value, str) and PORT.fullmatch(value) and 0 < int(value) < 65536:
        return int(value)
    if isinstance(value, str) and value:
        return value.lower()
    raise ValueError(f'{value!r} is not a port, "host:port" or a listener name')


def _headers(value: object) -> tuple[tuple[str, values.Globs], ...]:
    if not isinstance(value, dict) or not value:
        raise ValueError(f"{value!r} is not a table of header name to glob")
    return tuple((str(name).lower(), values.globs(globs)) for name, globs in value.items())


def _located(filename: str, lines: _Lines, index: int) -> Callable[[str | None, str | None], str]:
    def locate(name: str | None, key: str | None) -> str:
        line = lines.rule(index) if key is None else lines.key(index, key)
        who = f'rule "{name}"' if name else f"rule #{index + 1}"
        return _prefix(filename, line, who) + (f"{key}: " if key else "")

    return locate


def _prefix(filename: str, line: int | None, who: str) -> str:
    where = f"{filename}:{line}" if line is not None else filename
    return f"{where}: {who}: "


def parse_text(text: str, filename: str = "<rules>") -> RuleFile:
    """Every rule of a TOML text, or ``RulesError`` listing every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{filename}: not valid TOML: {exc}") from None
    problems: list[str] = []
    for key in data:
        if key not in TOP_KEYS:
            problems.append(f"{filename}: unknown key {key!r}" + did_you_mean(key, TOP_KEYS))
    seed = data.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        problems.append(f"{filename}: seed: {seed!r} is not a whole number")
        seed = None
    tables = data.get("rule", [])
    if not isinstance(tables, list):
        problems.append(f"{filename}: rule: write each rule as a [[rule]] table")
        tables = []
    if len(tables) > MAX_RULES:
        # Each rule in force counts in a slot of its own (observe.ruleslots),
        # API rules included: past the last slot a rule would act uncounted,
        # and its state would have no room in the shared table.
        problems.append(f"{filename}: {len(tables)} rules; at most {MAX_RULES} can be in force")
    lines = _Lines(text)
    rules: list[Rule] = []
    seen: dict[str, int | None] = {}
    for index, raw in enumerate(tables):
        locate = _located(filename, lines, index)
        if not isinstance(raw, dict):
            problems.append(locate(None, None) + "is not a table")
            continue
        reader = _RuleReader(raw, locate)
        rule = reader.read("file", None)
        problems.extend(reader.problems)
        if reader.name is not None:
            if reader.name in seen:
                first = seen[reader.name]
                at = f" at line {first}" if first is not None else ""
                problems.append(locate(reader.name, "name") + f"already used by the rule{at}")
            else:
                seen[reader.name] = lines.rule(index)
        if rule is not None:
            rules.append(replace(rule, line=lines.rule(index)))
    if problems:
        raise RulesError(problems)
    return RuleFile(seed, tuple(rules), filename)


def parse_file(path: str | Path) -> RuleFile:
    """A rules file by path; an unreadable file is a ``RulesError`` too."""
    try:
        text = read_text_file(path).decode("utf-8-sig")  # a BOM is no TOML statement
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc  # OSError's without its "[Errno N]"
        raise RulesError(f"{path}: cannot read the rules file: {reason}") from None
    return parse_text(text, str(path))


def parse_object(raw: object, *, now: float) -> Rule:
    """A rule from the control API: the fields of a ``[[rule]]`` plus an optional ``ttl``.

    ``now`` is when it is added: its ``window`` counts from there and its
    ``ttl`` (seconds) runs out at ``now + ttl``.
    """
    if not isinstance(raw, dict):
        raise RulesError("a rule is a JSON object")

    def locate(name: str | None, key: str | None) -> str:
        return (f'rule "{name}": ' if name else "") + (f"{key}: " if key else "")

    fields = {k: v for k, v in raw.items() if k != "ttl"}
    reader = _RuleReader(fields, locate)
    ttl = None
    if "ttl" in raw:
        ttl = raw["ttl"]
        if not values.is_number(ttl) or ttl <= 0:
            reader.problem("ttl", f"{ttl!r} is not a positive number of seconds")
            ttl = None
    rule = reader.read("api", now)
    if rule is None or reader.problems:
        raise RulesError(reader.problems)
    if ttl is None:
        return rule
    return replace(rule, expires=now + float(ttl))
