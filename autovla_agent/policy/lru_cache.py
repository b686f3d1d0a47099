"""A least-recently-used cache with hit counters, for the decode engine's vision-encoder and video-frame caches."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any


class LRUCache:
    """Least-recently-used cache with hit counters (vision-encoder outputs, normalised video frames)."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._store: OrderedDict[str, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Any | None:
        """The cached value, or None (counted as a miss)."""
        value = self._store.get(key)
        if value is not None:
            self._store.move_to_end(key)
            self.hits += 1
        else:
            self.misses += 1
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        if self.max_entries <= 0:
            return
        self._store[key] = value
        self._store.move_to_end(key)
        while len(self._store) > self.max_entries:
            self._store.popitem(last=False)

    def put(self, key: str, value: Any) -> None:
        """Store a value, evicting the least recently used entries beyond the limit."""
        self[key] = value

    def __len__(self) -> int:
        return len(self._store)
