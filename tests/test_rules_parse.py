"""Rules files and API objects into Rule values; every problem at once, located."""

from __future__ import annotations

from pathlib import Path

import pytest

from blackhole.errors import ConfigError
from blackhole.observe.layout import MAX_RULES
from blackhole.protocol.hooks import Stage, TLSFault
from blackhole.protocol.replies import Reply
from blackhole.rules.model import Key
from blackhole.rules.parse import RulesError, parse_file, parse_object, parse_text

# The example of RULES.md, as a user would copy it.
EXAMPLE = """\
seed = 7                     # optional; else the config file's `seed`

[[rule]]
name = "mailbox-full"        # required, unique, [A-Za-z0-9_.-]+
at = "rcpt"                  # the stage, required
recipient = "*@full.example" # matchers: all must hold
reply = "452 4.2.2 Mailbox full"

[[rule]]
name = "greylist-newcomers"
at = "rcpt"
greylist = "5m"              # 451 4.7.1 until the triplet retries 5 minutes later

[[rule]]
name = "flaky-end"
at = "end"
probability = 0.05
reply = "451 4.3.0 Temporary failure, try again"

[[rule]]
name = "outage"
at = "connect"
window = "60s-120s"
reply = "421 4.3.2 Maintenance, try later"

[[rule]]
name = "cut-big-messages"
at = "content"
after_bytes = 65536
drop = true
"""


def problems(text: str) -> list[str]:
    with pytest.raises(RulesError) as info:
        parse_text(text, "rules.toml")
    return info.value.problems


def rule_problems(body: str, at: str = "rcpt", name: str = "r") -> list[str]:
    return problems(f'[[rule]]\nname = "{name}"\nat = "{at}"\n{body}\n')


def test_the_rules_md_example_parses() -> None:
    parsed = parse_text(EXAMPLE, "rules.toml")
    assert parsed.seed == 7
    full, grey, flaky, outage, cut = parsed.rules
    assert (full.name, full.stage, full.source, full.line) == (
        "mailbox-full",
        Stage.RCPT,
        "file",
        3,
    )
    assert full.matchers.recipient is not None
    assert full.matchers.recipient.matches("a@FULL.example")
    assert full.actions.reply == Reply(452, "4.2.2", "Mailbox full")
    assert grey.selection.greylist == 300.0
    assert grey.selection.key is Key.TRIPLET  # greylist's default key
    assert flaky.selection.probability == 0.05
    assert flaky.selection.key is Key.SERVER
    assert outage.selection.window == (60.0, 120.0)
    assert cut.actions.after_bytes == 65536
    assert cut.actions.drop


def test_rules_error_is_a_config_error() -> None:
    # -t and SIGHUP treat a broken rules file as any broken config: exit 64.
    assert issubclass(RulesError, ConfigError)
    assert RulesError(["a", "b"]).exit_code == 64


def test_all_problems_at_once_with_lines_and_did_you_mean() -> None:
    text = """\
seed = 7
sed = 3

[[rule]]
name = "mailbox-full"
at = "rcpt"
recipent = "*@full.example"
reply = "452 4.2.2 Mailbox full"

[[rule]]
name = "early"
at = "connect"
sender = "a@b"
reply = "600 no"

[[rule]]
name = "mailbox-full"
at = "rcpr"
delay = -1
probability = 1.5
recipient = "a[b"
reply = "250 5.1.1 x"
"""
    assert problems(text) == [
        "rules.toml: unknown key 'sed' (did you mean 'seed'?)",
        "rules.toml:7: rule \"mailbox-full\": recipent: unknown key (did you mean 'recipient'?)",
        'rules.toml:13: rule "early": sender: is not known yet at connect: usable from mail on',
        'rules.toml:14: rule "early": reply: code 600 is not between 200 and 599',
        "rules.toml:18: rule \"mailbox-full\": at: unknown stage 'rcpr' (did you mean 'rcpt'?)",
        "rules.toml:21: rule \"mailbox-full\": recipient: glob 'a[b' has a '[' without its ']'",
        'rules.toml:20: rule "mailbox-full": probability: 1.5 is not a probability between 0.0 and 1.0',  # noqa: E501
        'rules.toml:22: rule "mailbox-full": reply: enhanced code 5.1.1 does not match reply code'
        " 250 (its class must be 2)",
        'rules.toml:19: rule "mailbox-full": delay: -1 is negative',
        'rules.toml:17: rule "mailbox-full": name: already used by the rule at line 4',
    ]


def test_toml_syntax_error() -> None:
    (message,) = problems('[[rule]]\nname = "x\n')
    assert message.startswith("rules.toml: not valid TOML: ")
    assert "line 2" in message


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(RulesError) as info:
        parse_file(tmp_path / "missing.toml")
    (message,) = info.value.problems
    assert message.startswith(f"{tmp_path / 'missing.toml'}: cannot read the rules file: ")


def test_parse_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('[[rule]]\nname = "x"\nat = "rcpt"\nreply = "452"\nevery = 0\n')
    with pytest.raises(RulesError) as info:
        parse_file(path)
    assert info.value.problems == [
        f'{path}:5: rule "x": every: 0 is not a whole number of at least 1'
    ]
    path.write_text(EXAMPLE)
    assert len(parse_file(path).rules) == 5


def many(count: int) -> str:
    return "".join(f'[[rule]]\nname = "r{n}"\nat = "rcpt"\nreply = "452"\n' for n in range(count))


def test_a_file_holds_at_most_the_rules_that_can_be_in_force() -> None:
    # Each rule in force counts in a slot of its own (observe.ruleslots).
    assert len(parse_text(many(MAX_RULES), "rules.toml").rules) == MAX_RULES
    assert problems(many(MAX_RULES + 1)) == [
        f"rules.toml: {MAX_RULES + 1} rules; at most {MAX_RULES} can be in force"
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('name = "x"\nreply = "450"', 'rules.toml:1: rule "x": at: required: the stage, one of connect, helo,'  # noqa: E501
         " starttls, auth, mail, rcpt, data, content, end, rset, noop, vrfy, quit, command"),
        ('at = "rcpt"\nreply = "450"', "rules.toml:1: rule #1: name: required: a unique name of"
         " letters, digits, '_', '.', '-'"),
        ('name = "a b"\nat = "rcpt"\nreply = "450"', "rules.toml:2: rule #1: name: 'a b': use 1"
         " to 128 letters, digits, '_', '.', '-'"),
        ('name = "x"\nat = "rcpt"', 'rules.toml:1: rule "x": needs at least one action: reply,'
         " delay, close, drop, reset, hang or tarpit (or tls at starttls, or a greylist)"),
    ],
)  # fmt: skip
def test_rule_basics(body: str, message: str) -> None:
    assert problems(f"[[rule]]\n{body}\n") == [message]


@pytest.mark.parametrize(
    ("key", "value", "at", "first"),
    [
        ("helo", '"x"', "connect", "helo"),
        ("auth_user", '"x"', "helo", "auth"),
        ("sender", '"x"', "connect", "mail"),
        ("sender", '"x"', "auth", "mail"),
        ("recipient", '"x"', "mail", "rcpt"),
        ("header", '{ "X-Test" = "a" }', "data", "content"),
        ("size", '"1-"', "helo", "mail"),
        ("message", "2", "starttls", "mail"),
    ],
)
def test_matcher_used_too_early(key: str, value: str, at: str, first: str) -> None:
    assert rule_problems(f'{key} = {value}\nreply = "450"', at=at) == [
        f'rules.toml:4: rule "r": {key}: is not known yet at {at}: usable from {first} on'
    ]


@pytest.mark.parametrize("at", ["rset", "noop", "vrfy", "quit", "command"])
def test_any_matcher_at_stages_outside_the_order(at: str) -> None:
    body = (
        'sender = "a@*"\nrecipient = "b@*"\nheader = { "X-A" = "1" }\nsize = "1-"\n'
        'message = 1\nhelo = "h"\nauth_user = "u"\nreply = "450"'
    )
    (rule,) = parse_text(f'[[rule]]\nname = "r"\nat = "{at}"\n{body}\n').rules
    assert rule.matchers.sender is not None and rule.matchers.message == (1, 1)


def test_matchers_usable_from_their_stage_on() -> None:
    text = """\
[[rule]]
name = "all"
at = "end"
listener = "mx"
client = ["192.0.2.0/24", "2001:db8::1"]
tls = true
helo = "*.example"
auth_user = "bob*"
sender = ""
recipient = ["*@a.example", "*@b.example"]
header = { "X-Test" = ["retry-*", "again"] }
size = "-1000"
message = "2-5"
reply = "250 2.0.0 fine"
"""
    (rule,) = parse_text(text).rules
    m = rule.matchers
    assert m.listener == "mx" and m.tls is True and m.size == (None, 1000) and m.message == (2, 5)
    assert m.client is not None and len(m.client) == 2
    assert m.header is not None and m.header[0][0] == "x-test"


@pytest.mark.parametrize(
    ("body", "at", "message"),
    [
        ("after_bytes = 10\ndrop = true", "end", "after_bytes: only at content, not at end"),
        ('tls = "fail"', "rcpt", "tls: 'fail' is a starttls action, not usable at rcpt"),
        ('tls = "crash"', "starttls", "tls: 'crash' is not \"fail\" or \"hang\""),
        ("probability = 1.5\nreply = \"450\"", "rcpt", "probability: 1.5 is not a probability between 0.0 and 1.0"),  # noqa: E501
        ("probability = -0.1\nreply = \"450\"", "rcpt", "probability: -0.1 is not a probability between 0.0 and 1.0"),  # noqa: E501
        ('reply = "600 6.0.0 no"', "rcpt", "reply: code 600 is not between 200 and 599"),
        ('reply = "250 5.1.1 x"', "rcpt", "reply: enhanced code 5.1.1 does not match reply code 250 (its class must be 2)"),  # noqa: E501
        ("delay = -2", "rcpt", "delay: -2 is negative"),
        ("delay = 700", "rcpt", "delay: 700 is over the maximum of 600 seconds"),
        ('greylist = "soon"', "rcpt", "greylist: 'soon' is not a duration (use e.g. \"300s\", \"5m\", \"2h\", \"1d\")"),  # noqa: E501
        ('window = "2m-1m"\nreply = "450"', "rcpt", "window: '2m-1m' ends before it starts"),
        ('key = "recipients"\nreply = "450"', "rcpt", "key: unknown key 'recipients' (did you mean 'recipient'?)"),  # noqa: E501
        ("every = 0\nreply = \"450\"", "rcpt", "every: 0 is not a whole number of at least 1"),
        ("first = 1.5\nreply = \"450\"", "rcpt", "first: 1.5 is not a whole number of at least 1"),
        ("after = -1\nreply = \"450\"", "rcpt", "after: -1 is not a whole number of at least 0"),
        ("times = 0\nreply = \"450\"", "rcpt", "times: 0 is not a whole number of at least 1"),
        ("tarpit = 0", "rcpt", "tarpit: 0 is not a whole number of at least 1"),
        ('drop = "yes"', "rcpt", "drop: 'yes' is not true or false"),
        ("listener = 70000\nreply = \"450\"", "rcpt", "listener: 70000 is not a port, \"host:port\" or a listener name"),  # noqa: E501
        ('client = "10.0.0.0/33"\nreply = "450"', "rcpt", "client: '10.0.0.0/33' is not an IP address or CIDR"),  # noqa: E501
        ('helo = "[x"\nreply = "450"', "rcpt", "helo: glob '[x' has a '[' without its ']'"),
        ('header = "X-Test"\nreply = "450"', "content", "header: 'X-Test' is not a table of header name to glob"),  # noqa: E501
        ('size = "big"\nreply = "450"', "rcpt", "size: 'big' is not a size range (use \"MIN-MAX\", e.g. \"1000-50000\")"),  # noqa: E501
        ("message = 0\nreply = \"450\"", "rcpt", "message: 0: messages are counted from 1, low to high"),  # noqa: E501
        ('reply = "450"\nhang = true', "rcpt", "reply: is never sent with hang = true"),
    ],
)  # fmt: skip
def test_bad_values(body: str, at: str, message: str) -> None:
    found = rule_problems(body, at=at)
    assert len(found) == 1, found
    assert found[0].endswith(f'rule "r": {message}'), found[0]


def test_end_actions_cannot_be_combined() -> None:
    (message,) = rule_problems("drop = true\nreset = true")
    assert message == 'rules.toml:1: rule "r": drop and reset cannot be combined: choose one'


def test_tls_matcher_and_tls_action() -> None:
    text = """\
[[rule]]
name = "plain-only"
at = "rcpt"
tls = false
reply = "530 5.7.0 Must issue a STARTTLS command first"

[[rule]]
name = "broken-handshake"
at = "starttls"
tls = "fail"
"""
    plain, broken = parse_text(text).rules
    assert plain.matchers.tls is False and plain.actions.tls is None
    assert broken.actions.tls is TLSFault.FAIL and broken.matchers.tls is None


def test_top_level_problems() -> None:
    assert problems('seed = "x"') == ["rules.toml: seed: 'x' is not a whole number"]
    assert problems('rule = "x"') == ["rules.toml: rule: write each rule as a [[rule]] table"]
    assert problems("rule = [1]") == ["rules.toml: rule #1: is not a table"]


def test_inline_rules_without_headers_are_named_not_numbered() -> None:
    # `rule = [{...}]` has no [[rule]] header line: the message falls back to the name.
    assert problems('rule = [{ name = "x", at = "rcpt", every = 0, reply = "450" }]') == [
        'rules.toml: rule "x": every: 0 is not a whole number of at least 1'
    ]


def test_fingerprint_follows_the_definition_not_the_layout() -> None:
    a = parse_text('[[rule]]\nname = "x"\nat = "rcpt"\nreply = "450"\n').rules[0]
    b = parse_text('\n# moved\n[[rule]]\nreply = "450"\nat = "rcpt"\nname = "x"\n').rules[0]
    c = parse_text('[[rule]]\nname = "x"\nat = "rcpt"\nreply = "451"\n').rules[0]
    d = parse_text('[[rule]]\nname = "y"\nat = "rcpt"\nreply = "450"\n').rules[0]
    assert a.fingerprint == b.fingerprint
    assert len({a.fingerprint, c.fingerprint, d.fingerprint}) == 3


def test_api_object() -> None:
    rule = parse_object(
        {"name": "full", "at": "rcpt", "recipient": "*@full.example", "reply": "452 4.2.2 Full",
         "ttl": 30},
        now=1000.0,
    )  # fmt: skip
    assert rule.source == "api"
    assert rule.started == 1000.0
    assert rule.expires == 1030.0
    same = parse_object(
        {"name": "full", "at": "rcpt", "recipient": "*@full.example", "reply": "452 4.2.2 Full"},
        now=5.0,
    )
    assert same.fingerprint == rule.fingerprint and same.expires is None


@pytest.mark.parametrize(
    ("raw", "messages"),
    [
        ([], ["a rule is a JSON object"]),
        ({"name": "x", "at": "rcpt", "reply": "450", "ttl": 0},
         ['rule "x": ttl: 0 is not a positive number of seconds']),
        ({"name": "x", "at": "rcpt", "reply": "250 5.1.1 no"},
         ['rule "x": reply: enhanced code 5.1.1 does not match reply code 250 (its class must be 2)']),  # noqa: E501
        ({"at": "rcpt", "replyy": "450"},
         ["name: required: a unique name of letters, digits, '_', '.', '-'",
          "replyy: unknown key (did you mean 'reply'?)",
          "needs at least one action: reply, delay, close, drop, reset, hang or tarpit"
          " (or tls at starttls, or a greylist)"]),
    ],
)  # fmt: skip
def test_api_object_problems_name_the_field(raw: object, messages: list[str]) -> None:
    with pytest.raises(RulesError) as info:
        parse_object(raw, now=0.0)
    assert sorted(info.value.problems) == sorted(messages)


def test_a_name_is_at_most_128_characters() -> None:
    longest = "n" * 128
    assert parse_object({"name": longest, "at": "rcpt", "reply": "450"}, now=0.0).name == longest
    with pytest.raises(RulesError) as info:
        parse_object({"name": longest + "n", "at": "rcpt", "reply": "450"}, now=0.0)
    # Shown cut short, and not as every problem's prefix.
    assert info.value.problems == [
        f"name: {'n' * 40!r}: use 1 to 128 letters, digits, '_', '.', '-'"
    ]


def test_non_finite_values_and_a_non_string_name() -> None:
    assert problems('[[rule]]\nname = 5\nat = "rcpt"\ndelay = nan\n') == [
        "rules.toml:2: rule #1: name: 5 is not a name: use a string",
        'rules.toml:4: rule #1: delay: nan is not a delay (use seconds, 3 or "2-5")',
    ]
    with pytest.raises(RulesError) as info:
        parse_object({"name": "x", "at": "rcpt", "reply": "450", "ttl": float("inf")}, now=0.0)
    assert info.value.problems == ['rule "x": ttl: inf is not a positive number of seconds']


@pytest.mark.parametrize("key", ["close", "drop", "reset", "hang"])
def test_a_switch_set_to_false_is_no_action(key: str) -> None:
    message = (
        'rules.toml:1: rule "r": needs at least one action: reply, delay, close, drop, reset,'
        " hang or tarpit (or tls at starttls, or a greylist)"
    )
    assert rule_problems(f"{key} = false") == [message]
    rule = parse_text(f'[[rule]]\nname = "r"\nat = "rcpt"\n{key} = false\nreply = "450"\n', "r")
    assert not getattr(rule.rules[0].actions, key)
    with pytest.raises(RulesError) as info:
        parse_object({"name": "x", "at": "rcpt", key: False}, now=0.0)
    assert info.value.problems == [message.replace('rules.toml:1: rule "r"', 'rule "x"')]


def test_the_tls_matcher_alone_is_no_action() -> None:
    assert rule_problems("tls = true", at="starttls") == [
        'rules.toml:1: rule "r": needs at least one action: reply, delay, close, drop, reset,'
        " hang or tarpit (or tls at starttls, or a greylist)"
    ]
