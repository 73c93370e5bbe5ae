"""The frontend's LRU cache of catalog answers, fenced by log indexes.

Three rules keep a cached answer from ever being older than what the log has
told this frontend:

1. Invalidation comes from applied log entries: when the frontend's catalog
   follower applies entry `i` that changes key `k`, `invalidate(k, i)` drops it
   and raises k's fence to `i`.
2. No stale fill: an answer read from a replica at applied index `r` is stored
   only if `r` is at least k's fence. (It may still be returned to the caller,
   but the gateway asks replicas for at least the fence, so it rarely is older.)
3. No lost invalidation: when the follower's state is replaced wholesale (a
   snapshot install) or it may have missed entries (out of touch with the
   leader), `flush(i)` empties the cache and raises every fence to `i`, and
   `usable` turns False, so reads bypass the cache until the follower is
   caught up again.

The class is pure (no threads, clocks or I/O besides a lock), so its rules
are property-tested against a model.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Hashable

from lru import LRU


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    invalidations: int = 0
    flushes: int = 0
    stale_fills_refused: int = 0


class FencedCache:
    """An LRU of (key -> value) where every key has a log-index fence."""

    def __init__(self, capacity: int, usable: Callable[[], bool] = lambda: True) -> None:
        self.capacity = capacity
        self._entries: LRU = LRU(capacity)
        self._fences: dict[Hashable, int] = {}
        self._floor = 0  # every key's fence is at least this (raised by flushes)
        self._usable = usable
        self._lock = threading.Lock()
        self.stats = CacheStats()

    def fence(self, key: Hashable) -> int:
        """The lowest log index an answer for `key` must reflect to be cached."""
        with self._lock:
            return max(self._floor, self._fences.get(key, 0))

    def get(self, key: Hashable) -> Any | None:
        """The cached value, or None on a miss (always a miss while unusable)."""
        if not self._usable():
            with self._lock:
                self.stats.misses += 1
            return None
        with self._lock:
            value = self._entries.get(key)
            if value is None:
                self.stats.misses += 1
            else:
                self.stats.hits += 1
            return value

    def fill(self, key: Hashable, value: Any, read_index: int) -> bool:
        """Store a value read at `read_index`, unless an invalidation already outdates it."""
        if not self._usable():
            return False
        with self._lock:
            if read_index < max(self._floor, self._fences.get(key, 0)):
                self.stats.stale_fills_refused += 1
                return False
            self._entries[key] = value
            return True

    def invalidate(self, key: Hashable, index: int) -> None:
        """Entry `index` changed `key`: drop it, and refuse fills read before `index`."""
        with self._lock:
            if key in self._entries:
                del self._entries[key]
            if index > self._fences.get(key, 0):
                self._fences[key] = index
            self.stats.invalidations += 1

    def flush(self, index: int) -> None:
        """Forget everything: answers read before `index` may be stale for any key."""
        with self._lock:
            self._entries.clear()
            self._floor = max(self._floor, index)
            self._fences = {k: i for k, i in self._fences.items() if i > self._floor}
            self.stats.flushes += 1

    def __len__(self) -> int:
        return len(self._entries)

    def snapshot_stats(self) -> dict:
        with self._lock:
            return {"size": len(self._entries), "capacity": self.capacity,
                    "hits": self.stats.hits, "misses": self.stats.misses,
                    "invalidations": self.stats.invalidations, "flushes": self.stats.flushes,
                    "stale_fills_refused": self.stats.stale_fills_refused}
