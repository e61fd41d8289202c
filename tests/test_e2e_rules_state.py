"""Rules with state over real sockets: selection, address conventions, -t and reloads."""

from __future__ import annotations

import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blackhole.testing import Blackhole
from tests.e2e import Factory, start
from tests.rulesrv import rules_server
from tests.smtpclient import Client
from tests.test_adversarial_observe import samples


def rcpt_codes(port: int, recipients: list[str], sender: str = "a@example.com") -> list[int]:
    client = Client.connect(port)
    client.expect("EHLO c.example", 250)
    client.expect(f"MAIL FROM:<{sender}>", 250)
    codes = [client.cmd(f"RCPT TO:<{r}>").code for r in recipients]
    client.cmd("QUIT")
    return codes


def test_first_fails_the_first_tries_then_accepts(server_factory: Factory, tmp_path: Path) -> None:
    server = rules_server(
        server_factory,
        tmp_path,
        '[[rule]]\nname = "two"\nat = "rcpt"\nfirst = 2\nreply = "451 4.3.0 Try again"\n',
    )
    assert rcpt_codes(server.port(), ["b@x.example"] * 4) == [451, 451, 250, 250]


def test_every_acts_on_every_kth_match(server_factory: Factory, tmp_path: Path) -> None:
    server = rules_server(
        server_factory,
        tmp_path,
        '[[rule]]\nname = "third"\nat = "rcpt"\nevery = 3\nreply = "452 4.2.2 Full"\n',
    )
    assert rcpt_codes(server.port(), ["b@x.example"] * 6) == [250, 250, 452, 250, 250, 452]


def test_probability_is_replayable_from_the_seed(server_factory: Factory, tmp_path: Path) -> None:
    rules = 'seed = 7\n[[rule]]\nname = "coin"\nat = "rcpt"\nprobability = 0.5\nreply = "450"\n'
    first = rules_server(server_factory, tmp_path / "a" if _mk(tmp_path / "a") else tmp_path, rules)
    codes = rcpt_codes(first.port(), ["b@x.example"] * 20)
    assert {250, 450} == set(codes)  # some of each at one half
    second = rules_server(
        server_factory, tmp_path / "b" if _mk(tmp_path / "b") else tmp_path, rules
    )
    assert rcpt_codes(second.port(), ["b@x.example"] * 20) == codes


def _mk(path: Path) -> bool:
    path.mkdir()
    return True


GREYLIST = '[[rule]]\nname = "grey"\nat = "rcpt"\ngreylist = "2s"\n'


def test_greylist_defers_until_the_triplet_retries_later(
    server_factory: Factory, tmp_path: Path
) -> None:
    server = rules_server(server_factory, tmp_path, GREYLIST)
    client = Client.connect(server.port())
    client.expect("EHLO c.example", 250)
    client.expect("MAIL FROM:<a@example.com>", 250)
    reply = client.expect("RCPT TO:<b@x.example>", 451, "4.7.1")
    assert "Greylisted" in reply.text
    client.expect("RCPT TO:<c@x.example>", 451)  # another triplet
    # Retry the first triplet until it passes: it must stay deferred for most of
    # the 2 s (the server saw it a moment before this clock started), then pass.
    start = time.monotonic()
    deferred = 0
    while (code := client.cmd("RCPT TO:<b@x.example>").code) == 451:
        deferred += 1
        assert time.monotonic() - start < 10, "the greylisted triplet never passed"
        time.sleep(0.1)
    assert code == 250
    assert deferred > 0 and time.monotonic() - start >= 1.5


def test_reload_keeps_greylist_entries_of_unchanged_rules(
    server_factory: Factory, tmp_path: Path
) -> None:
    server = rules_server(server_factory, tmp_path, GREYLIST.replace("2s", "1s"))
    assert rcpt_codes(server.port(), ["b@x.example", "probe@x.example"]) == [451, 451]
    # The period is over once the probe (first seen just after) passes.
    while rcpt_codes(server.port(), ["probe@x.example"]) != [250]:
        time.sleep(0.1)
    rules = tmp_path / "rules.toml"
    rules.write_text(
        rules.read_text() + '[[rule]]\nname = "new"\nat = "noop"\nreply = "250 2.0.0 new rules"\n'
    )
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for(r"configuration reloaded \(generation 2\)")
    client = Client.connect(server.port())
    client.expect("NOOP", 250)
    while client.cmd("NOOP").text != "2.0.0 new rules":  # the reload reaches the worker
        time.sleep(0.05)
    # The greylist rule is unchanged: its entry for this triplet survived.
    assert rcpt_codes(server.port(), ["b@x.example"]) == [250]


def test_broken_rules_reload_is_refused_and_the_old_rules_stay(
    server_factory: Factory, tmp_path: Path
) -> None:
    server = rules_server(
        server_factory, tmp_path, '[[rule]]\nname = "n"\nat = "noop"\nreply = "250 2.0.0 old"\n'
    )
    (tmp_path / "rules.toml").write_text('[[rule]]\nname = "n"\nat = "noop"\nreply = "600 bad"\n')
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for(r"reload refused: .*rules.toml:4: rule \"n\": reply: code 600")
    server.wait_for("still serving with the previous configuration")
    assert Client.connect(server.port()).cmd("NOOP").text == "2.0.0 old"


# --- address conventions --------------------------------------------------------------


def test_mox_addresses(server_factory: Factory, tmp_path: Path) -> None:
    server = rules_server(server_factory, tmp_path, "", "address_rules = mox\n")
    port = server.port()
    assert rcpt_codes(port, ["rcpttotemperror@x", "rcptto552@x", "rcptto@x", "temperror@x"]) == [
        451,
        552,
        250,
        250,
    ]
    client = Client.connect(port)
    client.expect("EHLO c", 250)
    client.expect("MAIL FROM:<mailfrompermerror@x>", 550, "5.0.0")
    client.expect("MAIL FROM:<a@x>", 250)
    client.expect("RCPT TO:<user-permerror@x>", 250)
    reply = client.data()
    assert (reply.code, reply.enhanced) == (550, "5.0.0")  # after the data by default


def test_ses_simulator_addresses(server_factory: Factory, tmp_path: Path) -> None:
    server = rules_server(server_factory, tmp_path, "", "address_rules = ses\nmode = bounce\n")
    port = server.port()
    sim = "simulator.amazonses.com"
    assert rcpt_codes(port, [f"bounce@{sim}", f"suppressionlist+x@{sim}", f"success@{sim}"]) == [
        550,
        550,
        250,
    ]
    client = Client.connect(port)
    client.expect("EHLO c", 250)
    client.expect("MAIL FROM:<a@x>", 250)
    client.expect(f"RCPT TO:<success+label@{sim}>", 250)
    assert client.data().code == 250  # accepted whatever the mode (bounce here)


def test_rules_act_before_address_conventions(server_factory: Factory, tmp_path: Path) -> None:
    server = rules_server(
        server_factory,
        tmp_path,
        '[[rule]]\nname = "first"\nat = "rcpt"\nreply = "452 4.2.2 rule"\n',
        "address_rules = mox\n",
    )
    assert rcpt_codes(server.port(), ["rcpttotemperror@x"]) == [452]


# --- -t ----------------------------------------------------------------------------------


def check(tmp_path: Path, rules: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "rules.toml").write_text(rules)
    conf = tmp_path / "b.conf"
    conf.write_text("listen = 127.0.0.1:0\nrules = rules.toml\n")
    return subprocess.run(
        [sys.executable, "-m", "blackhole", "-t", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=tmp_path,  # the relative rules path is taken from here
    )


def r(body: str, name: str = "r", at: str = "rcpt") -> str:
    return f'[[rule]]\nname = "{name}"\nat = "{at}"\n{body}\n'


BAD = {
    "unknown stage": (
        '[[rule]]\nname = "r"\nat = "rcptt"\nreply = "450"\n',
        "rules.toml:3: rule \"r\": at: unknown stage 'rcptt' (did you mean 'rcpt'?)",
    ),
    "unknown key": (
        r('reply = "450"\ndealy = 3'),
        "rules.toml:5: rule \"r\": dealy: unknown key (did you mean 'delay'?)",
    ),
    "matcher too early": (
        r('sender = "a@x"\nreply = "450"', at="connect"),
        'rules.toml:4: rule "r": sender: is not known yet at connect',
    ),
    "bad glob": (r('recipient = "[a-"\nreply = "450"'), 'rules.toml:4: rule "r": recipient:'),
    "reply 600": (
        r('reply = "600"'),
        'rules.toml:4: rule "r": reply: code 600 is not between 200 and 599',
    ),
    "class mismatch": (r('reply = "250 5.1.1"'), 'rules.toml:4: rule "r": reply:'),
    "negative delay": (r("delay = -1"), 'rules.toml:4: rule "r": delay:'),
    "probability 1.5": (
        r('probability = 1.5\nreply = "450"'),
        'rules.toml:4: rule "r": probability:',
    ),
    "duplicate names": (
        r('reply = "450"') + r('reply = "451"'),
        'rules.toml:6: rule "r": name: already used by the rule at line 1',
    ),
    "TOML syntax": ("[[rule]\nname=", "rules.toml: not valid TOML"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_dash_t_reports_a_bad_rules_file(tmp_path: Path, case: str) -> None:
    text, message = BAD[case]
    done = check(tmp_path, text)
    assert done.returncode == 64, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_dash_t_reports_every_problem_at_once(tmp_path: Path) -> None:
    cases = [k for k in BAD if k not in ("TOML syntax", "duplicate names")]
    text = "".join(BAD[k][0].replace('name = "r"', f'name = "r{i}"') for i, k in enumerate(cases))
    done = check(tmp_path, text)
    assert done.returncode == 64
    assert done.stderr.count("rules.toml:") >= len(cases), done.stderr


def test_dash_t_accepts_good_rules(tmp_path: Path) -> None:
    done = check(tmp_path, r('reply = "452 4.2.2 Mailbox full"'))
    assert done.returncode == 0, done.stderr


def test_first_is_counted_across_workers_through_the_hub(
    server_factory: Factory, tmp_path: Path
) -> None:
    # RULES.md "Determinism": counts are shared exactly by all workers. Twelve
    # sessions open at once (so both workers take some), one RCPT each: the
    # fleet fails exactly three, not three per worker.
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rule]]\nname = "three"\nat = "rcpt"\nfirst = 3\nreply = "451 4.3.0 Later"\n'
    )
    server = start(
        server_factory,
        tmp_path,
        f"listen = 127.0.0.1:0\nworkers = 2\ngrace_period = 1\nrules = {rules}\n",
    )
    clients = [Client.connect(server.port()) for _ in range(12)]
    try:
        for client in clients:
            client.expect("EHLO c.example", 250)
            client.expect("MAIL FROM:<a@example.com>", 250)
        codes = [client.cmd("RCPT TO:<b@x.example>").code for client in clients]
    finally:
        for client in clients:
            client.close()
    assert sorted(codes) == [250] * 9 + [451] * 3, codes


RULE_D = frozenset({("rule", "d")})


def test_a_delay_range_draws_the_same_delays_whatever_the_workers() -> None:
    # RULES.md: a decision depends on the seed, the rule, the key and the
    # match count of that key, "never on which worker took the connection".
    # The delays drawn show in their metric: the same sum, or not.
    rule = {"name": "d", "at": "noop", "delay": "0-0.1"}
    drawn = []
    for workers in (1, 3):
        with Blackhole(workers=workers, seed=7, tls=False, rules=[rule]) as bh:
            for _ in range(6):
                with smtplib.SMTP(bh.host, bh.port, timeout=10) as client:
                    client.ehlo("c.example")
                    assert client.noop()[0] == 250
            drawn.append(samples(bh)["blackhole_injected_delay_seconds_total", RULE_D])
    assert drawn[0] > 0
    assert drawn[1] == pytest.approx(drawn[0], abs=1e-9)
