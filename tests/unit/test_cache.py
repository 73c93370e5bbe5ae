"""The fenced cache against a model of a log, a lagging follower and racing fills.

The property: a cache hit is never older than the follower's own applied state,
whatever the interleaving of commits, follower applies, fills read at any
replica index (started and finished at different times), snapshot installs
and losses of contact.
"""
from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from bazar.frontend.cache import FencedCache

KEYS = ["a", "b", "c"]


class LogModel:
    """The catalog log: entry i changes one key. A value is (key, index of its last change)."""

    def __init__(self) -> None:
        self.entries: list[str] = []  # entries[i - 1] is the key entry i changed

    def commit(self, key: str) -> int:
        self.entries.append(key)
        return len(self.entries)

    def version(self, key: str, at_index: int) -> int:
        """Index of the last change to `key` at or before `at_index` (0 = initial value)."""
        for index in range(at_index, 0, -1):
            if self.entries[index - 1] == key:
                return index
        return 0


class CacheMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.log = LogModel()
        self.applied = 0  # the follower's applied index
        self.in_touch = True
        self.cache = FencedCache(capacity=2, usable=lambda: self.in_touch)
        self.reads_in_flight: list[tuple[str, tuple, int]] = []

    @rule(key=st.sampled_from(KEYS))
    def commit(self, key):
        self.log.commit(key)

    @precondition(lambda self: self.applied < len(self.log.entries))
    @rule()
    def follower_applies_next_entry(self):
        self.applied += 1
        self.cache.invalidate(self.log.entries[self.applied - 1], self.applied)

    @precondition(lambda self: self.applied < len(self.log.entries))
    @rule(data=st.data())
    def follower_installs_a_snapshot(self, data):
        # Entries up to the snapshot are never seen one by one: only a reset.
        self.applied = data.draw(st.integers(self.applied + 1, len(self.log.entries)))
        self.cache.flush(self.applied)

    @rule(key=st.sampled_from(KEYS), data=st.data())
    def a_replica_read_starts(self, key, data):
        """A replica at any index up to the commit index answers; the fill lands later."""
        read_index = data.draw(st.integers(0, len(self.log.entries)))
        value = (key, self.log.version(key, read_index))
        self.reads_in_flight.append((key, value, read_index))

    @precondition(lambda self: self.reads_in_flight)
    @rule(data=st.data())
    def a_replica_read_fills(self, data):
        position = data.draw(st.integers(0, len(self.reads_in_flight) - 1))
        key, value, read_index = self.reads_in_flight.pop(position)
        self.cache.fill(key, value, read_index)

    @precondition(lambda self: self.in_touch)
    @rule()
    def follower_loses_touch(self):
        self.in_touch = False
        self.cache.flush(self.applied)

    @precondition(lambda self: not self.in_touch)
    @rule()
    def follower_catches_up(self):
        while self.applied < len(self.log.entries):
            self.follower_applies_next_entry()
        self.in_touch = True

    @rule(key=st.sampled_from(KEYS))
    def get(self, key):
        hit = self.cache.get(key)
        if hit is None:
            return
        assert self.in_touch, "served from the cache while out of touch"
        hit_key, version = hit
        assert hit_key == key
        assert version >= self.log.version(key, self.applied), (
            f"stale hit for {key}: version {version}, follower has applied "
            f"{self.log.version(key, self.applied)}")

    @invariant()
    def never_over_capacity(self):
        assert len(self.cache) <= 2


TestFencedCache = CacheMachine.TestCase
TestFencedCache.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def test_hit_and_miss_counts_follow_requests():
    cache = FencedCache(capacity=10)
    assert cache.get("x") is None
    assert cache.fill("x", {"v": 1}, read_index=5)
    assert cache.get("x") == {"v": 1}
    assert cache.get("x") == {"v": 1}
    stats = cache.snapshot_stats()
    assert (stats["hits"], stats["misses"], stats["size"]) == (2, 1, 1)


def test_a_fill_older_than_a_processed_invalidation_is_refused():
    cache = FencedCache(capacity=10)
    cache.invalidate("x", 7)
    assert not cache.fill("x", "old", read_index=6)
    assert cache.get("x") is None
    assert cache.fill("x", "new", read_index=7)
    assert cache.get("x") == "new"
    assert cache.snapshot_stats()["stale_fills_refused"] == 1


def test_flush_raises_every_fence_and_an_unusable_cache_serves_nothing():
    usable = [True]
    cache = FencedCache(capacity=10, usable=lambda: usable[0])
    cache.fill("x", "v", read_index=3)
    cache.flush(10)
    assert cache.fence("x") == 10 and cache.fence("never-seen") == 10
    assert not cache.fill("y", "v", read_index=9)
    usable[0] = False
    assert not cache.fill("y", "v", read_index=11)
    assert cache.get("y") is None
    usable[0] = True
    assert cache.fill("y", "v", read_index=11) and cache.get("y") == "v"


def test_the_lru_evicts_the_least_recently_used_key():
    cache = FencedCache(capacity=2)
    cache.fill("a", 1, 0)
    cache.fill("b", 2, 0)
    cache.get("a")
    cache.fill("c", 3, 0)
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3
