"""Every matcher of RULES.md against the facts of one event."""

from __future__ import annotations

import pytest

from blackhole.protocol.hooks import Stage
from blackhole.rules.match import Facts, crossed, failing
from blackhole.rules.model import Matchers
from blackhole.rules.parse import parse_object


def matchers(at: str = "command", **fields: object) -> Matchers:
    return parse_object({"name": "m", "at": at, "reply": "450", **fields}, now=0.0).matchers


def holds(m: Matchers, **facts: object) -> bool:
    return failing(m, Facts(Stage.COMMAND, **facts)) is None  # type: ignore[arg-type]


def test_no_matchers_always_hold() -> None:
    assert holds(matchers())


def test_listener_by_port_host_port_and_name() -> None:
    facts = {"listener_port": 2526, "listener_host": "127.0.0.1:2526", "listener_name": "MX"}
    assert holds(matchers(listener=2526), **facts)
    assert holds(matchers(listener="2526"), **facts)
    assert holds(matchers(listener="127.0.0.1:2526"), **facts)
    assert holds(matchers(listener="mx"), **facts)
    assert not holds(matchers(listener=2525), **facts)
    assert not holds(matchers(listener="submission"), **facts)
    assert not holds(matchers(listener=2526))  # unknown listener


def test_client_address_or_cidr() -> None:
    m = matchers(client=["192.0.2.0/24", "2001:db8::/32"])
    assert holds(m, client="192.0.2.200")
    assert holds(m, client="2001:db8::5")
    assert not holds(m, client="198.51.100.1")
    assert not holds(m, client="::ffff:10.0.0.1")
    assert not holds(m)  # no client known
    assert not holds(m, client="not-an-ip")  # a UNIX socket peer, say
    assert holds(matchers(client="203.0.113.9"), client="203.0.113.9")


def test_tls() -> None:
    assert holds(matchers(tls=True), tls=True)
    assert not holds(matchers(tls=True), tls=False)
    assert holds(matchers(tls=False), tls=False)


@pytest.mark.parametrize("key", ["helo", "auth_user", "sender"])
def test_glob_matchers_need_a_known_value(key: str) -> None:
    m = matchers(**{key: "b*"})
    assert holds(m, **{key: "BOB"})
    assert not holds(m, **{key: "alice"})
    assert not holds(m)


def test_null_sender() -> None:
    m = matchers(sender="")
    assert holds(m, sender="")
    assert not holds(m, sender="a@b.example")
    assert not holds(m)  # outside a transaction


def test_recipient_the_one_given_else_any() -> None:
    m = matchers(recipient="*@full.example")
    assert holds(m, recipient="a@full.example", recipients=("b@ok.example",))
    # At rcpt (or LMTP end) only the one in question counts.
    assert not holds(m, recipient="b@ok.example", recipients=("a@full.example",))
    # Later, any of them.
    assert holds(m, recipients=("b@ok.example", "a@FULL.example"))
    assert not holds(m, recipients=("b@ok.example",))
    assert not holds(m)


def test_header_table() -> None:
    m = matchers(header={"X-Test": "retry-*", "Subject": ["hello", "hi *"]})
    headers = (("x-test", "retry-3"), ("Subject", "hi there"))
    assert holds(m, headers=headers)
    assert not holds(m, headers=(("X-Test", "retry-3"),))  # Subject missing
    assert not holds(m, headers=(("X-Test", "once"), ("Subject", "hello")))
    assert not holds(m)  # headers not read yet
    # Any of several headers of one name.
    assert holds(
        matchers(header={"Received": "*relay*"}),
        headers=(("Received", "from a"), ("Received", "via relay.example")),
    )


def test_size_open_ends() -> None:
    assert holds(matchers(size="1000-2000"), size=1500)
    assert holds(matchers(size="1000-2000"), size=1000)
    assert holds(matchers(size="1000-2000"), size=2000)
    assert not holds(matchers(size="1000-2000"), size=2001)
    assert not holds(matchers(size="1000-2000"), size=999)
    assert holds(matchers(size="1000-"), size=10**9)
    assert holds(matchers(size="-10"), size=0)
    assert not holds(matchers(size="-10"))  # no SIZE= given


def test_message_number() -> None:
    assert holds(matchers(message=2), message=2)
    assert not holds(matchers(message=2), message=1)
    assert holds(matchers(message="2-5"), message=5)
    assert not holds(matchers(message="2-5"), message=6)
    assert not holds(matchers(message=1))


def test_all_given_must_hold_and_the_failing_one_is_named() -> None:
    m = matchers(sender="a@*", recipient="b@*")
    facts = Facts(Stage.COMMAND, sender="a@x", recipient="c@x")
    assert failing(m, facts) == "recipient"
    assert failing(m, Facts(Stage.COMMAND, sender="z@x", recipient="b@x")) == "sender"


@pytest.mark.parametrize(
    ("after", "before", "chunk", "acts"),
    [
        (0, 0, 100, True),  # the first content event
        (0, 100, 100, False),
        (0, 0, 0, True),
        (100, 0, 99, False),
        (100, 0, 100, True),
        (100, 50, 100, True),  # crossed within this chunk
        (100, 100, 10, False),  # already past: acted before
        (100, 99, 1, True),
    ],
)
def test_after_bytes_acts_at_the_crossing_chunk(
    after: int, before: int, chunk: int, acts: bool
) -> None:
    facts = Facts(Stage.CONTENT, content_bytes=before + chunk, chunk_bytes=chunk)
    assert crossed(after, facts) is acts
