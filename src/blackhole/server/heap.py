"""The worker's heap and CPython's cyclic garbage collector.

A full collection (generation 2) visits every object the collector tracks,
and CPython starts one whenever the objects that reached generation 2 since
the last one are a quarter of those there: while sessions are being opened
that is every 25 % more sessions, each collection longer than the last
(60 ms with 5,000 idle sessions and about 250 ms with 19,000 on this project's
loaded 2-core machine). No session is greeted during one. About 50,000 of the
tracked objects are the worker's own, made at start-up and alive until it
exits (modules, classes, functions, the configuration): ``freeze_startup``
moves them to the collector's permanent generation (``gc.freeze``), so that no
collection visits them again. Objects in it are still freed by reference
counting; only garbage in a reference cycle would stay, which is why a reload,
which replaces the configuration, first gives them back (``thaw``).
"""

from __future__ import annotations

import gc


def freeze_startup() -> None:
    """Collect start-up garbage, then exempt what is left from future collections.

    Call before the worker takes its first connection: a session frozen
    here would never be collected if it ended in a reference cycle.
    """
    gc.collect()
    gc.freeze()


def thaw() -> None:
    """Give the frozen objects back to the collector (a reload replaces some of them)."""
    gc.unfreeze()
