"""The gateway's startup objects are frozen out of the garbage collector's full collections, and
young collections run less often; what requests allocate is still collected."""

from __future__ import annotations

import gc
import weakref

from pipeline.gateway.app import YOUNG_COLLECTION_EVERY, settle_heap


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_startup_objects_are_frozen_and_later_cycles_still_collected() -> None:
    threshold = gc.get_threshold()
    try:
        settle_heap()
        assert gc.get_freeze_count() > 1000  # what the imports and the app made
        assert gc.get_threshold()[0] == YOUNG_COLLECTION_EVERY
        made_after = Node()
        gone = weakref.ref(made_after)
        del made_after
        gc.collect()
        assert gone() is None
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
