"""Batching: cut a sequence of items into consecutive groups bounded in count and bytes."""

from __future__ import annotations

from typing import Callable, Iterable, TypeVar

T = TypeVar("T")


def batched(items: Iterable[T], size_of: Callable[[T], int], *, max_items: int,
            max_bytes: int) -> list[list[T]]:
    """Consecutive groups of ``items`` in their order, each of at most ``max_items`` items and
    ``max_bytes`` bytes in total; an item larger than ``max_bytes`` gets a group of its own."""
    groups: list[list[T]] = []
    current: list[T] = []
    held = 0
    for item in items:
        size = size_of(item)
        if current and (len(current) >= max_items or held + size > max_bytes):
            groups.append(current)
            current, held = [], 0
        current.append(item)
        held += size
    if current:
        groups.append(current)
    return groups
