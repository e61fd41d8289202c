"""What the supervisor and the hub say to each other on the hub's control channel.

Same framing as the workers' channel (``supervisor.messages``); the hub
answers ``Start`` with ``supervisor.messages.Ready`` (or ``Failed``) and
``ClaimNames`` with ``NamesClaimed``, and reports its rule slot bindings with
``RuleSlotsBound``.
"""

from __future__ import annotations

from dataclasses import dataclass

from blackhole.config.model import Config
from blackhole.observe.layout import Layout
from blackhole.rules.model import Rule


def file_rules_of(config: Config) -> tuple[Rule, ...]:
    """The rules file's rules (GET /rules lists them; API rules may not take their names)."""
    return config.rules.rules if config.rules is not None else ()


@dataclass(frozen=True, slots=True)
class HubSpec:
    """What a hub is started with.

    ``store_fd`` is the listening UNIX socket the workers connect to,
    ``control_fd`` the control API's listening socket (None: no
    ``control_listen``), ``counters_fd`` the counters region
    (``observe.tally``; None until the supervisor makes one: the figures are
    then zero). Descriptor numbers are the hub's own (spawn) or inherited
    (fork).
    """

    config: Config
    token: str | None
    store_fd: int
    control_fd: int | None
    layout: Layout
    counters_fd: int | None = None
    file_rules: tuple[Rule, ...] = ()  # names an API rule may not take
    record: int = 0  # ``record = N``: message records kept for GET /messages
    # When the server started (time.time()): /stats ``uptime`` counts from it,
    # so a restarted hub does not start it over.
    started: float | None = None
    # The rule state region (``hub.sharedstore``) the workers decide in; None
    # with ``state_url`` (the hub's store is then Redis).
    state_fd: int | None = None
    # Rule names bound to counter slots (``observe.ruleslots``) by the hub
    # before this one, as it last reported them (``RuleSlotsBound``): a
    # restarted hub keeps them, and with them the rules' counts.
    rule_slots: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class StartHub:
    spec: HubSpec


@dataclass(frozen=True, slots=True)
class FleetState:
    """Sent by the supervisor to the hub whenever a worker slot changes."""

    workers: int  # slots configured
    serving: tuple[int, ...]  # numbers of the slots whose worker is ready


@dataclass(frozen=True, slots=True)
class HubReload:
    """SIGHUP: the new configuration and token (re-read from control_token_file)."""

    config: Config
    token: str | None
    file_rules: tuple[Rule, ...] = ()
    layout: Layout | None = None  # the counters' layout, with the listeners it added


@dataclass(frozen=True, slots=True)
class ClaimNames:
    """SIGHUP, before the supervisor commits the new configuration: its file
    rules. The hub answers ``NamesClaimed``; with no clash it takes them as the
    file rules at once, so no API rule can take one of their names meanwhile."""

    number: int  # matches the answer to this question
    file_rules: tuple[Rule, ...]


@dataclass(frozen=True, slots=True)
class NamesClaimed:
    number: int
    clashes: tuple[str, ...]  # names an API rule holds
    api_rules: int  # how many API rules there are (file rules + these: at most MAX_RULES)


@dataclass(frozen=True, slots=True)
class RuleSlotsBound:
    """Sent by the hub to the supervisor whenever it binds or frees a rule's
    counter slot, before the workers learn of it; the supervisor keeps the
    latest for the next hub (``HubSpec.rule_slots``)."""

    slots: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class StopHub:
    """The workers are gone: close the sockets and exit."""
