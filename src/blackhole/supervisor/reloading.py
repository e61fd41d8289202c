"""SIGHUP: re-read the config, certificates and log file; apply them to new sessions.

A config that does not load leaves everything as it was (the log is
reopened all the same, for logrotate), and so does one whose rules file names
a rule like a rule added through the control API: the hub, which keeps those,
is asked before anything is committed (``HubKeeper.claim_names``). One that
loads is committed at once:
if its listeners differ, every worker is replaced by one serving the new
set, each old one serving on until its successor is ready; otherwise the
workers apply it in place. "configuration reloaded" is logged once every
worker serves the new generation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from blackhole.config.model import Config
from blackhole.errors import BlackholeError, ConfigError
from blackhole.observe.layout import MAX_RULES, rules_fit
from blackhole.observe.logs import setup_logging
from blackhole.rules.model import Rule
from blackhole.rules.parse import NAME_OF_AN_API_RULE
from blackhole.server.app import startup_line
from blackhole.server.observing import listener_labels
from blackhole.server.unixsock import apply_modes
from blackhole.supervisor.fleet import Fleet
from blackhole.supervisor.messages import Reload, ReopenLogs
from blackhole.supervisor.reload import close_all, prepare
from blackhole.supervisor.tlsfiles import TLSStore

log = logging.getLogger("blackhole.supervisor")


class Reloader:
    def __init__(
        self,
        fleet: Fleet,
        tls_store: TLSStore,
        as_user: str,
        claim: Callable[[tuple[Rule, ...]], tuple[tuple[str, ...], int]],
    ) -> None:
        """``claim``: the names of the new file rules that API rules hold, and
        how many API rules there are (the hub's, ``HubKeeper.claim_names``)."""
        self.fleet = fleet
        self.tls_store = tls_store
        self.as_user = as_user  # said when a reload is refused: whose rights read the files
        self.claim = claim
        self.pending: int | None = None  # generation not yet acknowledged by all

    def reload(self) -> bool:
        """SIGHUP: True if the new configuration is being applied, False if
        there is none to read or it was refused (the old one stays whole)."""
        fleet = self.fleet
        assert fleet.settings is not None
        old = fleet.settings
        source = old.config.config_file
        if source is None:
            log.info("SIGHUP: no config file to re-read (started without -c); logs reopened")
            self._reopen_logs(old.config)
            return False
        log.info("SIGHUP: reloading %s", source)
        try:
            prepared = prepare(old, fleet.bound, self.tls_store)
        except BlackholeError as exc:
            self._refuse(exc.problems if isinstance(exc, ConfigError) else [str(exc)], old.config)
            return False
        # Last, once nothing else can fail: with no clash the hub holds the new
        # names from now on, so no API rule can take one before the workers have them.
        problems = self._clashes(prepared.settings.config)
        if problems:
            prepared.rebound.abandon()
            self._refuse(problems, old.config)
            return False
        fleet.settings = prepared.settings
        config = prepared.settings.config
        rebound = prepared.rebound
        self.pending = prepared.settings.generation
        fleet.bound = rebound.bound
        if fleet.counting is not None:
            # Before the new workers start: they count with the new labels.
            fleet.counting.listeners(listener_labels(fleet.bound))
        close_all(rebound.removed)
        apply_modes(listener for listener, _sock in rebound.bound)
        if rebound.changed:
            log.info("listeners changed: starting workers on the new set")
            fleet.roll()
        else:
            fleet.broadcast(Reload(prepared.settings))
        fleet.resize(config.workers)
        for slot in fleet.slots:
            slot.heartbeat.interval = config.heartbeat_interval
        self.check()
        return True

    def _clashes(self, config: Config) -> list[str]:
        """A problem for each new file rule named like an API rule, and one if the
        file's rules and the API's would be more than can be in force."""
        if config.rules is None:
            return []
        file = config.rules
        names, api_rules = self.claim(file.rules)
        taken = set(names)
        problems = [file.located(r) + NAME_OF_AN_API_RULE for r in file.rules if r.name in taken]
        if not rules_fit(len(file.rules), api_rules):
            problems.append(
                f"{file.filename}: {len(file.rules)} rules, and {api_rules} added through the"
                f" control API; at most {MAX_RULES} can be in force together"
            )
        return problems

    def _refuse(self, problems: list[str], old: Config) -> None:
        for problem in problems:
            log.error("reload refused: %s", problem)
        log.error("still serving with the previous configuration%s", self.as_user)
        self._reopen_logs(old)

    def _reopen_logs(self, config: Config) -> None:
        try:
            setup_logging(config)
        except ConfigError as exc:
            log.error("cannot reopen the log: %s", exc)
        self.fleet.broadcast(ReopenLogs(config))

    def check(self) -> None:
        """Log "configuration reloaded" once every worker serves the pending generation."""
        pending = self.pending
        settings = self.fleet.settings
        if pending is None or settings is None:
            return
        for slot in self.fleet.slots:
            if slot.process is None or not slot.ready or slot.generation < pending:
                return
            if slot.predecessor is not None:
                return
        self.pending = None
        line = startup_line(
            settings.config,
            self.fleet.bound,
            settings.mailname,
            settings.tls is not None,
            len(self.fleet.slots),
        )
        kept = [str(slot.number) for slot in self.fleet.slots if slot.rules_refused]
        if kept:
            # A clash the hub could not rule out in time (``_clashes``): the
            # workers said which rules (Fleet.receive); not a success to report.
            log.error(
                "configuration reloaded (generation %d) except the rules file, refused by"
                " worker %s (the previous rules stay): %s",
                pending,
                ", ".join(kept),
                line,
            )
            return
        log.info("configuration reloaded (generation %d): %s", pending, line)
