"""batched: consecutive groups bounded in count and bytes (pure, a table of cases)."""

from __future__ import annotations

import pytest

from luisy_sync.batching import batched

CASES = [
    # sizes, max_items, max_bytes, expected groups of sizes
    ([], 3, 10, []),
    ([1, 1, 1, 1], 3, 10, [[1, 1, 1], [1]]),            # count bound
    ([4, 4, 4], 5, 10, [[4, 4], [4]]),                  # byte bound: 4+4+4 > 10
    ([5, 5], 5, 10, [[5, 5]]),                          # exactly the byte bound fits
    ([20, 1, 1], 5, 10, [[20], [1, 1]]),                # an oversized item stands alone
    ([1, 20, 1], 5, 10, [[1], [20], [1]]),
    ([0, 0, 0], 2, 0, [[0, 0], [0]]),                   # empty files count only by number
]


@pytest.mark.parametrize("sizes,max_items,max_bytes,expected", CASES)
def test_batched(sizes: list[int], max_items: int, max_bytes: int, expected: list[list[int]]) -> None:
    items = [(f"f{i}", size) for i, size in enumerate(sizes)]
    groups = batched(items, lambda item: item[1], max_items=max_items, max_bytes=max_bytes)
    assert [[size for _, size in group] for group in groups] == expected
    assert [item for group in groups for item in group] == items  # order kept, nothing lost
