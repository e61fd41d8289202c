"""/healthz is 503 from the hub's first answer until the supervisor reports workers.

The hub serves the control API before the supervisor has told it about the
fleet (that message follows the hub's Ready). Until then every configured
worker is missing, as the supervisor itself assumes (hubkeeper.configure):
a probe that asks early must not be told "ok" while no worker serves yet
(a container's health check, a Kubernetes readiness probe).
"""

from __future__ import annotations

import dataclasses

from blackhole.config.model import Config
from blackhole.hub.main import HubRunner
from blackhole.hub.spec import HubSpec
from blackhole.observe.layout import Layout


def test_a_fresh_hub_reports_every_configured_worker_missing() -> None:
    config = dataclasses.replace(Config(), workers=2)
    spec = HubSpec(config, None, -1, None, Layout(["smtp://127.0.0.1:25"]))
    runner = HubRunner(spec, channel=None)  # type: ignore[arg-type]  # not used before run()
    ok, missing = runner.backend.health()
    assert not ok
    assert missing == ["worker 1 is not serving", "worker 2 is not serving"]
