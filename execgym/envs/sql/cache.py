"""A least-recently-used cache bounded by the bytes of what it holds, not by a number of entries.

Entry counts bound nothing when entries differ in size (one parse tree of a 180 KB query is tens of
megabytes), so every cache of the SQL env says how much memory it may keep and what each entry costs.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["ByteLRU"]

V = TypeVar("V")


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
        self.max_bytes = int(max_bytes)
        self.max_entry_bytes = int(max_entry_bytes if max_entry_bytes is not None else self.max_bytes // 4)
        self._cost = cost
        self._data: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self.nbytes = 0

    def get(self, key: Hashable) -> V | None:
        """The value for ``key`` (marked as recently used), or None."""
        item = self._data.get(key)
        if item is None:
            return None
        self._data.move_to_end(key)
        return item[0]

    def put(self, key: Hashable, value: V) -> None:
        """Keep ``value`` under ``key`` unless it is too big; evict the least recently used past the budget."""
        size = int(self._cost(key, value))
        old = self._data.pop(key, None)
        if old is not None:
            self.nbytes -= old[1]
        if size > self.max_entry_bytes:
            return
        self._data[key] = (value, size)
        self.nbytes += size
        while self.nbytes > self.max_bytes and self._data:
            _, (_, freed) = self._data.popitem(last=False)
            self.nbytes -= freed

    def keys(self) -> list[Hashable]:
        return list(self._data)

    def clear(self) -> None:
        self._data.clear()
        self.nbytes = 0

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)
