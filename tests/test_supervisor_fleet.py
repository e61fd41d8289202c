"""The fleet (start, watch, restart, retire workers) with fake processes and a fake clock.

No process is started and no test waits: time is a number the test moves,
and a "process" records what it was sent.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pytest

from blackhole.config.model import Config
from blackhole.errors import BlackholeError, PermissionDenied
from blackhole.supervisor.backoff import Backoff
from blackhole.supervisor.counting import Counting
from blackhole.supervisor.draining import Drain
from blackhole.supervisor.fleet import Fleet, Phase, Timing
from blackhole.supervisor.messages import (
    Failed,
    Ping,
    Pong,
    Ready,
    Reload,
    Retire,
    Settings,
    WorkerSpec,
)
from blackhole.supervisor.slots import Slot

INTERVAL = 1.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass(eq=False)  # compared and hashed by identity, as real processes are
class FakeProcess:
    number: int
    pid: int
    sentinel: int = -1
    control: None = None
    returncode: int | None = None
    deadline: float | None = None
    sent: list[object] = field(default_factory=list)
    signals: list[int] = field(default_factory=list)
    inbox: list[object] = field(default_factory=list)
    exit_code: int = 0

    def fds(self) -> list[int]:
        return []

    def send(self, message: object) -> bool:
        self.sent.append(message)
        return True

    def receive(self) -> list[object] | None:
        messages, self.inbox = self.inbox, []
        return messages

    def signal(self, signum: int) -> None:
        self.signals.append(signum)
        if signum == signal.SIGKILL:
            self.exit_code = -signal.SIGKILL

    def reap(self) -> int:
        self.returncode = self.exit_code
        return self.returncode


class Launcher:
    def __init__(self) -> None:
        self.started: list[FakeProcess] = []
        self.fail_with: OSError | None = None

    def __call__(
        self, method: str, spec: WorkerSpec, sockets: Sequence[object], fds: Iterable[int]
    ) -> FakeProcess:
        if self.fail_with is not None:
            raise self.fail_with
        process = FakeProcess(spec.number, pid=100 + len(self.started))
        self.started.append(process)
        return process


def make_fleet(
    workers: int = 2, announced: bool = True, **config: object
) -> tuple[Fleet, Launcher, Clock]:
    clock, launcher = Clock(), Launcher()
    timing = Timing(misses=3, start_timeout=10.0, stop_margin=5.0, clock=clock)
    fleet = Fleet(launcher, timing, Phase(announced=announced))
    settings = Config(workers=workers, heartbeat_interval=INTERVAL, grace_period=2.0, **config)  # type: ignore[arg-type]
    fleet.settings = Settings(settings, "mx.test", None, generation=1)
    for number in range(1, workers + 1):
        fleet.add(number)
    return fleet, launcher, clock


def slot(fleet: Fleet, number: int) -> Slot:
    return next(s for s in fleet.slots if s.number == number)


def make_ready(fleet: Fleet) -> None:
    for s in fleet.slots:
        assert isinstance(s.process, FakeProcess)
        s.process.inbox.append(Ready(s.process.pid))
        fleet.receive(s.process)


def die(fleet: Fleet, process: FakeProcess, code: int = 1) -> None:
    process.exit_code = code
    fleet.exited(process)


# --- slot bookkeeping ---------------------------------------------------------------


def test_each_slot_gets_a_process_with_its_number() -> None:
    fleet, launcher, _clock = make_fleet(workers=3)
    assert [p.number for p in launcher.started] == [1, 2, 3]
    assert sorted(fleet.slots.numbers()) == [1, 2, 3]
    assert list(fleet.slots.processes()) == launcher.started
    assert not fleet.slots.all_ready()
    make_ready(fleet)
    assert fleet.slots.all_ready()


def test_ready_is_reported_once_per_worker() -> None:
    fleet, _launcher, _clock = make_fleet(workers=2)
    seen: list[int] = []
    fleet.on_ready = lambda s: seen.append(s.number)
    make_ready(fleet)
    assert seen == [1, 2]


def test_resize_adds_and_retires_slots() -> None:
    fleet, launcher, clock = make_fleet(workers=3)
    make_ready(fleet)
    third = launcher.started[2]
    fleet.resize(1)
    assert fleet.slots.numbers() == [1]
    assert fleet.slots.retiring == [launcher.started[1], third]
    assert third.sent == [Retire()]
    # Two grace periods and the margin, then a stuck retiree is killed.
    assert third.deadline == clock.now + 2 * 2.0 + 5.0
    fleet.resize(2)
    assert fleet.slots.numbers() == [1, 2]
    assert launcher.started[-1].number == 2


def test_a_retired_process_that_exits_is_forgotten_not_replaced() -> None:
    fleet, launcher, _clock = make_fleet(workers=2)
    make_ready(fleet)
    fleet.resize(1)
    die(fleet, launcher.started[1], 0)
    assert fleet.slots.retiring == []
    assert len(launcher.started) == 2


def test_a_stuck_retiree_is_killed_at_its_deadline() -> None:
    fleet, launcher, clock = make_fleet(workers=2)
    make_ready(fleet)
    fleet.resize(1)
    retiree = launcher.started[1]
    assert retiree.deadline is not None
    clock.now = retiree.deadline
    fleet.tick()
    assert signal.SIGKILL not in retiree.signals
    clock.now += 0.1
    fleet.tick()
    assert retiree.signals == [signal.SIGKILL]


def test_rolling_restart_keeps_the_old_worker_until_the_new_one_is_ready() -> None:
    fleet, launcher, _clock = make_fleet(workers=1)
    make_ready(fleet)
    old = launcher.started[0]
    fleet.roll()
    new = launcher.started[1]
    assert slot(fleet, 1).predecessor is old
    assert set(fleet.slots.processes()) == {old, new}
    assert old.sent == []  # still serving the old listeners
    new.inbox.append(Ready(new.pid))
    fleet.receive(new)
    assert slot(fleet, 1).predecessor is None
    assert old.sent == [Retire()]


def test_a_worker_ready_after_a_reload_gets_the_new_settings() -> None:
    fleet, launcher, _clock = make_fleet(workers=1)
    assert fleet.settings is not None
    newer = Settings(fleet.settings.config, "mx2.test", None, generation=2)
    fleet.settings = newer
    process = launcher.started[0]
    process.inbox.append(Ready(process.pid))
    fleet.receive(process)
    assert process.sent == [Reload(newer)]


# --- heartbeats ---------------------------------------------------------------------


def test_heartbeats_go_to_ready_workers_only_and_answers_clear_them() -> None:
    fleet, launcher, clock = make_fleet(workers=1)
    process = launcher.started[0]
    fleet.tick()
    assert process.sent == []  # not ready: the start timeout watches it instead
    make_ready(fleet)
    clock.now += INTERVAL
    fleet.tick()
    assert process.sent == [Ping(1)]
    process.inbox.append(Pong(1))
    fleet.receive(process)
    clock.now += INTERVAL
    fleet.tick()
    assert process.sent == [Ping(1), Ping(2)]
    assert slot(fleet, 1).heartbeat.outstanding_since == clock.now


def counted_restarts(fleet: Fleet) -> dict[str, int]:
    assert fleet.counting is not None
    return fleet.counting.tally.snapshot().restarts()


def test_a_worker_missing_three_heartbeats_is_killed() -> None:
    fleet, launcher, clock = make_fleet(workers=2)
    make_ready(fleet)
    fleet.counting = Counting(["127.0.0.1:25"], 2)
    silent, chatty = launcher.started
    for second in range(4):
        clock.now = 1000.0 + second * INTERVAL
        fleet.tick()
        chatty.inbox.append(Pong(slot(fleet, 2).heartbeat.seq))
        fleet.receive(chatty)
    assert silent.signals == []  # 3 intervals waited: not yet over the limit
    clock.now += 0.01
    fleet.tick()
    assert silent.signals == [signal.SIGKILL]
    assert chatty.signals == []
    assert slot(fleet, 1).kill_reason == "did not answer the heartbeat for 3.0s"
    die(fleet, silent, 0)
    assert slot(fleet, 1).start_at == clock.now  # replaced at once
    assert counted_restarts(fleet) == {"heartbeat": 1}


@pytest.mark.parametrize(
    ("code", "reason"),
    [(-signal.SIGKILL, "killed"), (-signal.SIGTERM, "killed"), (-signal.SIGSEGV, "crashed"),
     (-signal.SIGABRT, "crashed"), (0, "exited"), (70, "exited")],
)  # fmt: skip
def test_a_worker_lost_is_counted_by_how_it_ended(code: int, reason: str) -> None:
    fleet, launcher, _clock = make_fleet(workers=1)
    make_ready(fleet)
    fleet.counting = Counting(["127.0.0.1:25"], 1)
    die(fleet, launcher.started[0], code)
    assert counted_restarts(fleet) == {reason: 1}
    fleet.counting.tally.reset()  # POST /reset: counted with the workers' figures
    assert counted_restarts(fleet) == {}


def test_a_worker_that_never_gets_ready_is_killed_after_the_start_timeout() -> None:
    fleet, launcher, clock = make_fleet(workers=1)
    clock.now += 10.0
    fleet.tick()
    assert launcher.started[0].signals == []
    clock.now += 0.5
    fleet.tick()
    assert launcher.started[0].signals == [signal.SIGKILL]
    assert slot(fleet, 1).kill_reason == "did not start within 10s"


def test_deadlines_name_the_next_thing_to_do() -> None:
    fleet, _launcher, clock = make_fleet(workers=1)
    assert min(fleet.deadlines()) == clock.now + 10.0  # the start timeout
    make_ready(fleet)
    fleet.tick()  # pings, due again one interval later
    assert min(fleet.deadlines()) == clock.now + INTERVAL


# --- restarts and back-off ------------------------------------------------------------


def test_quick_deaths_are_repaired_at_once_then_backed_off() -> None:
    fleet, launcher, clock = make_fleet(workers=1)
    make_ready(fleet)
    delays = []
    for _ in range(6):
        process = launcher.started[-1]
        clock.now += 0.1  # it ran 0.1 s
        die(fleet, process)
        start_at = slot(fleet, 1).start_at
        assert start_at is not None
        delays.append(start_at - clock.now)
        clock.now = start_at
        fleet.tick()  # the restart, when due
        assert launcher.started[-1] is not process
    assert delays == [0, 0, 0, 0.5, 1.0, 2.0]


def test_a_restart_is_not_started_before_it_is_due() -> None:
    fleet, launcher, clock = make_fleet(workers=1)
    slot(fleet, 1).backoff = Backoff(burst=0, base=4.0)
    die(fleet, launcher.started[0])
    clock.now += 3.9
    fleet.tick()
    assert len(launcher.started) == 1
    clock.now += 0.1
    fleet.tick()
    assert len(launcher.started) == 2


def test_a_worker_that_ran_long_resets_the_back_off() -> None:
    fleet, launcher, clock = make_fleet(workers=1)
    for _ in range(5):
        die(fleet, launcher.started[-1])
        clock.now = slot(fleet, 1).start_at or clock.now
        fleet.tick()
    assert slot(fleet, 1).backoff.failures == 5
    clock.now += 60.0
    die(fleet, launcher.started[-1])
    assert slot(fleet, 1).start_at == clock.now
    assert slot(fleet, 1).backoff.failures == 1


def test_a_failed_start_after_start_up_is_retried_later() -> None:
    fleet, launcher, clock = make_fleet(workers=1)
    launcher.fail_with = OSError(24, "Too many open files")
    slot(fleet, 1).backoff = Backoff(burst=0, base=2.0)
    die(fleet, launcher.started[0])
    assert slot(fleet, 1).start_at == clock.now + 2.0
    clock.now += 2.0
    fleet.tick()  # fails again: the next attempt waits longer
    assert slot(fleet, 1).start_at == clock.now + 4.0
    launcher.fail_with = None
    clock.now += 4.0
    fleet.tick()
    assert len(launcher.started) == 2


# --- start-up and stopping ------------------------------------------------------------


def test_a_worker_that_cannot_start_during_start_up_fails_the_server() -> None:
    clock, launcher = Clock(), Launcher()
    launcher.fail_with = PermissionError(13, "Permission denied")
    fleet = Fleet(launcher, Timing(clock=clock), Phase())
    fleet.settings = Settings(Config(), "mx.test", None, generation=1)
    with pytest.raises(PermissionDenied, match="cannot start worker 1: Permission denied"):
        fleet.add(1)


def test_a_worker_dying_during_start_up_fails_the_server_with_its_reason() -> None:
    fleet, launcher, _clock = make_fleet(workers=1, announced=False)
    process = launcher.started[0]
    process.inbox.append(Failed(77, "cannot read /etc/key.pem"))
    fleet.receive(process)
    with pytest.raises(BlackholeError, match=r"cannot read /etc/key\.pem") as caught:
        die(fleet, process, 77)
    assert caught.value.exit_code == 77


def test_while_stopping_a_dead_worker_is_not_replaced() -> None:
    fleet, launcher, _clock = make_fleet(workers=2)
    make_ready(fleet)
    fleet.phase.stopping = True
    die(fleet, launcher.started[0], 0)
    assert slot(fleet, 1).process is None
    assert slot(fleet, 1).start_at is None
    fleet.kill_all()
    assert launcher.started[1].signals == [signal.SIGKILL]
    assert list(fleet.slots.processes()) == []


# --- draining (SIGTERM/SIGINT) ---------------------------------------------------------


def test_a_stop_signals_every_worker_then_kills_leftovers_after_grace_and_margin() -> None:
    fleet, launcher, clock = make_fleet(workers=2)
    make_ready(fleet)
    drain = Drain(fleet)
    drain.on_signal("SIGTERM")
    assert fleet.phase.stopping
    assert all(p.signals == [signal.SIGTERM] for p in launcher.started)
    assert drain.deadline == clock.now + 2.0 + 5.0  # grace_period, then the margin
    die(fleet, launcher.started[0], 0)
    assert not drain.done()
    clock.now = drain.deadline - 0.01
    drain.tick()
    assert launcher.started[1].signals == [signal.SIGTERM]
    clock.now = drain.deadline
    drain.tick()
    assert launcher.started[1].signals == [signal.SIGTERM, signal.SIGKILL]
    die(fleet, launcher.started[1], -signal.SIGKILL)
    assert drain.done()


def test_a_second_stop_signal_kills_at_once() -> None:
    fleet, launcher, _clock = make_fleet(workers=2)
    make_ready(fleet)
    drain = Drain(fleet)
    drain.on_signal("SIGINT")
    drain.on_signal("SIGINT")
    assert all(p.signals == [signal.SIGTERM, signal.SIGKILL] for p in launcher.started)
    assert drain.done()
