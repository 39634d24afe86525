"""How skewwatch's processes set CPython's cyclic garbage collector.

Decoded events are nested dicts and lists: the collector tracks them though none is in a
cycle, and a micro-batch holds thousands at once. With CPython's default thresholds (a young
collection every 700 net allocations, older ones every 10 of those) it walked them, and the
process's long-lived objects, again and again: `DetectionService.process` on 100-event
messages ran 35-60% faster with this policy (bench/RESULTS.md). Everything alive once the
process is set up (modules, Faust, the app) is frozen out of the collections, and young
objects are collected every 50,000 allocations.
"""
from __future__ import annotations

import gc

__all__ = ["relax_gc"]

YOUNG_THRESHOLD = 50_000


def relax_gc() -> None:
    """Freeze every object alive now out of the collections and collect young objects less often.

    Call it once the process is set up (modules imported, app built), before the hot loop:
    `skewwatch worker` and `skewwatch replay` do.
    """
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 20, 100)
