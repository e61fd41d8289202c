"""The hub's API rules: 400 naming the field, 409 against API and file names, ttl."""

from __future__ import annotations

import pytest

from blackhole.control.backend import RuleConflictError, RuleError, UnknownRuleError
from blackhole.hub.apirules import ApiRuleBook, to_rule
from blackhole.rules.parse import parse_text

FILE = parse_text('[[rule]]\nname = "from-file"\nat = "rcpt"\nreply = "550 No"\n').rules


def test_newest_first_and_the_worker_parses_the_same_rule() -> None:
    book = ApiRuleBook()
    first = book.add({"name": "a", "at": "mail", "delay": 1}, None, now=100.0)
    second = book.add({"name": "b", "at": "mail", "delay": 2}, 5.0, now=200.0)
    assert [r.name for r in book.rules] == ["b", "a"]
    assert [to_rule(api) for api in book.wire()] == [second, first]
    assert second.expires == 205.0 and first.expires is None


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": "x", "at": "rcpt", "reply": "99"}, "reply"),
        ({"name": "x", "at": "nowhere", "reply": "450"}, "at"),
        ({"name": "bad name", "at": "rcpt", "reply": "450"}, "name"),
        ({"name": "x", "at": "rcpt"}, "rule"),  # no action: the rule as a whole
    ],
)
def test_a_bad_rule_names_its_field(fields: dict[str, object], field: str) -> None:
    with pytest.raises(RuleError) as caught:
        ApiRuleBook().add(fields, None, now=0.0)
    assert caught.value.field == field, caught.value


def test_names_are_unique_against_api_and_file_rules() -> None:
    book = ApiRuleBook(FILE)
    book.add({"name": "mine", "at": "mail", "delay": 1}, None, now=0.0)
    for name in ("mine", "from-file"):
        with pytest.raises(RuleConflictError):
            book.add({"name": name, "at": "mail", "delay": 1}, None, now=0.0)


def test_new_file_rules_are_taken_only_if_no_api_rule_has_one_of_their_names() -> None:
    book = ApiRuleBook(FILE)
    book.add({"name": "mine", "at": "mail", "delay": 1}, None, now=0.0)
    both = parse_text(
        '[[rule]]\nname = "new"\nat = "rcpt"\nreply = "550 No"\n'
        '[[rule]]\nname = "mine"\nat = "rcpt"\nreply = "550 No"\n'
    ).rules
    assert book.claim(both) == (("mine",), 1)
    assert book.file_rules == FILE  # refused as a whole
    assert book.claim(both[:1]) == ((), 1)
    assert book.file_rules == both[:1]
    with pytest.raises(RuleConflictError):
        book.add({"name": "new", "at": "mail", "delay": 1}, None, now=0.0)
    book.add({"name": "from-file", "at": "mail", "delay": 1}, None, now=0.0)  # free again


def test_remove_clear_and_expire() -> None:
    book = ApiRuleBook()
    for name, ttl in (("short", 1.0), ("long", 10.0), ("forever", None)):
        book.add({"name": name, "at": "mail", "delay": 1}, ttl, now=0.0)
    assert book.next_expiry() == 1.0
    assert [r.name for r in book.expire(5.0)] == ["short"]
    assert book.next_expiry() == 10.0
    assert book.remove("long").name == "long"
    with pytest.raises(UnknownRuleError):
        book.remove("long")
    assert [r.name for r in book.clear()] == ["forever"]
    assert book.rules == () and book.next_expiry() is None


def test_new_file_rules_are_not_taken_if_with_the_api_rules_they_are_too_many() -> None:
    book = ApiRuleBook(FILE)
    book.add({"name": "mine", "at": "mail", "delay": 1}, None, now=0.0)
    many = parse_text(
        "".join(f'[[rule]]\nname = "r{n}"\nat = "rcpt"\nreply = "550 No"\n' for n in range(256))
    ).rules
    assert book.claim(many) == ((), 1)
    assert book.file_rules == FILE  # 257 with the API's: refused as a whole
    assert book.claim(many[:255]) == ((), 1)
    assert book.file_rules == many[:255]
