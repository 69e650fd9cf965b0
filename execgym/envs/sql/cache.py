"""A least-recently-used cache bounded by the bytes of what it holds, not by a number of entries.

Entry counts bound nothing when entries differ in size (one parse tree of a 180 KB query is tens of
megabytes), so every cache of the SQL env says how much memory it may keep and what each entry costs.
The eviction is :class:`cachetools.LRUCache`'s; this adds what it lacks: a cost that may read the key, and a
cap on one entry (cachetools keeps an entry up to the whole budget, which would empty the cache for it).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from cachetools import LRUCache

__all__ = ["ByteLRU"]

V = TypeVar("V")


def _stored_size(item: tuple[object, int]) -> int:
    return item[1]


class ByteLRU(Generic[V]):
    """A mapping of at most ``max_bytes`` (by ``cost(key, value)``), least recently used evicted first.

    An entry that costs more than ``max_entry_bytes`` (default: a quarter of the budget) is not kept.

    Example:
        >>> cache = ByteLRU(100, cost=lambda key, value: len(value))
        >>> cache.put("a", "x" * 20); cache.put("b", "y" * 20); cache.put("c", "z" * 20)
        >>> cache.get("a") is not None          # "a" is now the most recently used
        True
        >>> for key in "def": cache.put(key, "w" * 20)   # over budget: "b", the least recently used, goes
        >>> sorted(cache.keys()), cache.nbytes
        (['a', 'c', 'd', 'e', 'f'], 100)
        >>> cache.put("g", "v" * 26); "g" in cache   # bigger than a quarter of the budget: not kept
        False
    """

    def __init__(self, max_bytes: int, cost: Callable[[Hashable, V], int],
                 max_entry_bytes: int | None = None) -> None:
        self._data: LRUCache[Hashable, tuple[V, int]] = LRUCache(1, getsizeof=_stored_size)
        self.max_bytes = int(max_bytes)
        self.max_entry_bytes = int(max_entry_bytes if max_entry_bytes is not None else self.max_bytes // 4)
        self._cost = cost

    @property
    def max_bytes(self) -> int:
        """The budget. Setting it keeps the entries that fit the new one, least recently stored evicted first."""
        return self._max_bytes

    @max_bytes.setter
    def max_bytes(self, value: int) -> None:
        self._max_bytes = int(value)
        # cachetools fixes a cache's size at construction: a new budget is a new cache holding what fits.
        # Each value is stored with its cost, so the cost function may read the key (cachetools' cannot).
        old, self._data = self._data, LRUCache(max(1, self._max_bytes), getsizeof=_stored_size)
        for key, item in old.items():
            if item[1] <= self._max_bytes:
                self._data[key] = item

    @property
    def nbytes(self) -> int:
        """The cost of what the cache holds now."""
        return int(self._data.currsize)

    def get(self, key: Hashable) -> V | None:
        """The value for ``key`` (marked as recently used), or None."""
        item = self._data.get(key)
        return None if item is None else item[0]

    def put(self, key: Hashable, value: V) -> None:
        """Keep ``value`` under ``key`` unless it is too big; evict the least recently used past the budget."""
        size = int(self._cost(key, value))
        if size > min(self.max_entry_bytes, self._max_bytes):
            self._data.pop(key, None)
            return
        self._data[key] = (value, size)

    def keys(self) -> list[Hashable]:
        """The keys held, in the order they were first stored."""
        return list(self._data)

    def clear(self) -> None:
        self._data.clear()

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)
