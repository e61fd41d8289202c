"""Shared by the tests of ``blackhole.testing``: which tests wait for ``record = N``.

``Blackhole.messages`` reads ``GET /messages``, which the server fills once
the ``record`` key exists and its records reach the hub. Until then those
tests are skipped, by this one condition.
"""

from __future__ import annotations

import pytest

from blackhole.config.options import OPTION_NAMES

needs_records = pytest.mark.skipif(
    "record" not in OPTION_NAMES,
    reason="the record key (GET /messages) is not in this build yet",
)
