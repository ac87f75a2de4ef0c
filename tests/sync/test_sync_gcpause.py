"""fewer_full_collections: raises the generation-2 threshold while syncs run, then restores it."""

from __future__ import annotations

import gc

import anyio

from luisy_sync.gcpause import FULL_COLLECTION_EVERY, fewer_full_collections, with_fewer_full_collections


def test_nested_uses_restore_the_thresholds_only_after_the_last() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        with fewer_full_collections():
            assert gc.get_threshold() == (700, 10, FULL_COLLECTION_EVERY)
            with fewer_full_collections():
                assert gc.get_threshold()[2] == FULL_COLLECTION_EVERY
            assert gc.get_threshold()[2] == FULL_COLLECTION_EVERY  # the outer one still runs
        assert gc.get_threshold() == (700, 10, 10)
    finally:
        gc.set_threshold(*before)


def test_thresholds_changed_meanwhile_are_left_alone() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        with fewer_full_collections():
            gc.set_threshold(500, 5, 5)
        assert gc.get_threshold() == (500, 5, 5)
    finally:
        gc.set_threshold(*before)


def test_decorated_coroutine_runs_under_it_and_keeps_its_result_and_name() -> None:
    before = gc.get_threshold()

    @with_fewer_full_collections
    async def work(x: int) -> tuple[int, tuple[int, int, int]]:
        return x * 2, gc.get_threshold()

    doubled, during = anyio.run(work, 21)
    assert doubled == 42 and during[2] >= FULL_COLLECTION_EVERY
    assert work.__name__ == "work"
    assert gc.get_threshold() == before
