"""The frontend follows the catalog group as a non-voting Raft member.

Why: the invalidations the cache needs are exactly the committed catalog log.
A non-voting member (PySyncObj's `SyncObj(None, voters)`) receives every entry
about as fast as a voter, follows a new leader after failover by itself, and
does not count towards quorum, so frontends can come and go freely. Pushes
over HTTP, by contrast, get lost whenever a frontend is down or slow.

This module turns applied entries into cache invalidations, and decides when
the follower is too far behind for the cache to be trusted.
"""
from __future__ import annotations

import logging

from bazar import consensus
from bazar.cluster.config import ClusterConfig
from bazar.frontend.cache import FencedCache
from bazar.node.catalog import CatalogState, keys_changed
from bazar.node.catalog.commands import ALL

log = logging.getLogger("bazar.follower")


class CatalogFollower:
    """A non-voting catalog member that keeps `cache` consistent with the log."""

    def __init__(self, config: ClusterConfig, source_host: str, cache_capacity: int | None = None) -> None:
        self.max_lag = config.cache.max_follower_lag
        self.cache = FencedCache(cache_capacity or config.cache.capacity, usable=self.caught_up)
        self._was_usable = False
        self._leader: str | None = None
        self.member = consensus.join(config, "catalog", CatalogState(), source_host=source_host,
                                     listeners=[self])
        self.state = self.member.state
        self.member.on_tick(self._watch)

    # -- ApplyListener: runs on PySyncObj's tick thread ------------------------

    def on_applied(self, index: int, command: dict, result) -> None:
        keys = keys_changed(command, result)
        if keys is ALL:  # the seed: anything may have changed
            self.cache.flush(index)
            return
        for key in keys:
            self.cache.invalidate(key, index)

    def on_reset(self, index: int) -> None:
        log.info("catalog state replaced by a snapshot at index %d: cache flushed", index)
        self.cache.flush(index)  # the member also stops counting itself in touch

    # -- freshness ------------------------------------------------------------

    def caught_up(self) -> bool:
        """True while the follower has applied every catalog write acknowledged more than
        `max_follower_lag` seconds ago, counted from when its leader last heard from a
        majority (`RaftMember.in_touch`, the rule replicas use for local reads: a deposed
        leader still sending heartbeats does not count); the cache is bypassed otherwise.

        The cache is also flushed when this changes to False and when the leader changes.
        """
        return self.member.in_touch(self.max_lag)

    def _watch(self) -> None:
        """Each tick (after the member's own): flush when we stop being usable."""
        usable = self.caught_up()
        if self._was_usable and not usable:
            log.warning("lost touch with the catalog leader for over %.1f s: cache flushed and "
                        "bypassed until caught up", self.max_lag)
            self.cache.flush(self.state.applied_index)
        self._was_usable = usable
        leader = self.member.leader
        if leader is not None and leader != self._leader:
            if self._leader is not None:
                # A failover is when a follower is likeliest to have been cut off unnoticed;
                # starting cold costs a few misses and rules out anything missed.
                log.info("catalog leader changed from %s to %s: cache flushed", self._leader, leader)
                self.cache.flush(self.state.applied_index)
            self._leader = leader

    def status(self) -> dict:
        silence = self.member.seconds_since_leader()
        return {"applied_index": self.state.applied_index,
                "leader_commit_index": self.member.leader_commit_index,
                "lag_seconds": None if silence is None else round(silence, 3),
                "caught_up": self.caught_up()}

    def wait_applied(self, index: int, timeout: float) -> bool:
        return self.member.wait_applied(index, timeout)

    def close(self) -> None:
        self.member.close()
