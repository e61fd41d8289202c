"""Observing a running server (OBSERVE.md): logging, counts, metrics, event log, console.

- ``logs``: the text/JSON log handler.
- ``layout``, ``counters``, ``tally``, ``snapshot``, ``ruleslots``: exact
  counts across workers. Workers bump integers in their own slot of one shared
  region; the supervisor sums the slots, folds a dead worker's slot into the
  retired totals, and resets by baseline.
- ``metrics``: the Prometheus exposition over a snapshot.
- ``eventlog``, ``record``: the per-message and per-session JSON lines, and the
  bounded ring of recent message records behind ``GET /messages``.
- ``console``: the ``stats_interval`` line and the end-of-run summary.

The control API that serves these is ``blackhole.control``. Each module's
docstring says where it plugs into the supervisor and the workers.
"""
