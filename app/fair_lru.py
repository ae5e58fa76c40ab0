"""A bounded LRU map shared by many owners, in which no owner can push out another owner's entries.

Threat model: a single LRU shared by every caller lets one caller evict everybody else's entries by
creating its own in a loop. Here each owner holds at most `per_owner` entries, and an owner past its
share loses its own least recently used entry, never anyone else's. The `total` cap stays as a
backstop for many owners at once: past it, the owner holding the most entries loses its least
recently used one (among equals, the owner idle longest), so an owner at or under the fair share
`total / number of owners` is evicted only when every owner holds as many. Every eviction is
reported to `on_evict`, so state hanging off a value (secrets in the redactor) can be dropped too.
Not thread-safe: the caller holds its own lock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

V = TypeVar("V")


class FairLru(Generic[V]):
    """Map of (owner, key) → value, bounded per owner and in total.

    Args:
        per_owner: Most entries one owner holds; its least recently used goes first.
        total: Most entries altogether; the largest owner's least recently used goes first.
        on_evict: Told each value that is pushed out (not values removed with `pop`).

    Example:
        seen = FairLru(per_owner=2, total=100)
        seen.put("alice", "n1", None)
        seen.contains("alice", "n1")  # True until alice has stored two more
    """

    def __init__(self, *, per_owner: int, total: int, on_evict: Callable[[V], None] = lambda value: None) -> None:
        if per_owner < 1 or total < 1:
            raise ValueError("FairLru needs room for at least one entry per owner and in total")
        self._per_owner = per_owner
        self._total = total
        self._on_evict = on_evict
        self._size = 0
        # Owners in order of their last use, each with its entries in order of their last use.
        self._owners: OrderedDict[str, OrderedDict[str, V]] = OrderedDict()

    def get(self, owner: str, key: str) -> V | None:
        """The value, marked most recently used; None when absent."""
        entries = self._owners.get(owner)
        if entries is None or key not in entries:
            return None
        entries.move_to_end(key)
        self._owners.move_to_end(owner)
        return entries[key]

    def contains(self, owner: str, key: str) -> bool:
        """Whether the entry is held, without touching its recency."""
        return key in self._owners.get(owner, ())

    def put(self, owner: str, key: str, value: V) -> None:
        """Store `value` as `owner`'s most recent entry, then evict down to both caps."""
        entries = self._owners.setdefault(owner, OrderedDict())
        if key not in entries:
            self._size += 1
        entries[key] = value
        entries.move_to_end(key)
        self._owners.move_to_end(owner)
        while len(entries) > self._per_owner:
            self._evict_oldest_of(owner)
        while self._size > self._total:
            self._evict_oldest_of(self._largest_owner())

    def pop(self, owner: str, key: str) -> V | None:
        """Remove and return the value (no `on_evict`: the caller has it); None when absent."""
        entries = self._owners.get(owner)
        if entries is None or key not in entries:
            return None
        value = entries.pop(key)
        self._size -= 1
        if not entries:
            del self._owners[owner]
        return value

    def values(self) -> Iterator[V]:
        for entries in self._owners.values():
            yield from entries.values()

    def _largest_owner(self) -> str:
        # `max` keeps the first of equals, and owners are kept least recently used first.
        return max(self._owners, key=lambda owner: len(self._owners[owner]))

    def _evict_oldest_of(self, owner: str) -> None:
        entries = self._owners[owner]
        _, value = entries.popitem(last=False)
        self._size -= 1
        if not entries:
            del self._owners[owner]
        self._on_evict(value)
