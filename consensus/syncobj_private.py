"""PySyncObj 0.3.17's private state that a member reads, each behind a name that says
what it is. PySyncObj has no public way to ask these; the patch layer (raft_fixes.py,
group_commit.py...) reaches them from inside the class, the member from here.

Each accessor takes the SyncObj (or a stand-in with the same attribute) and reads it
as it is at that instant: call them on the tick thread, where the state is consistent.
"""
from __future__ import annotations

from typing import Any

FOLLOWER, CANDIDATE, LEADER = 0, 1, 2  # pysyncobj.syncobj._RAFT_STATE


def role(sync) -> int:
    """FOLLOWER, CANDIDATE or LEADER."""
    return sync._SyncObj__raftState


def leader_node(sync) -> Any:
    """The node this member takes as leader of the current term, or None."""
    return sync._SyncObj__raftLeader


def first_index_of_term(sync) -> int | None:
    """The index of the entry a leader appends first in its term (PySyncObj's no-op);
    None before this member has led."""
    return sync._SyncObj__noopIDx


def announced_commit_index(sync) -> int | None:
    """The commit index the leader last announced to this member."""
    return sync._SyncObj__leaderCommitIndex


def peer_nodes(sync) -> Any:
    """The other voting members, PySyncObj's own collection (the public `otherNodes` is a copy)."""
    return sync._SyncObj__otherNodes


def last_response_times(sync) -> dict:
    """When (time.monotonic) each peer last answered this leader, by node."""
    return sync._SyncObj__lastResponseTime


def send_heartbeats(sync) -> None:
    """Send append_entries to every peer now, rather than at the next heartbeat."""
    sync._SyncObj__sendAppendEntries()


def transport(sync) -> Any:
    """The transport object PySyncObj built (of the class passed as transportClass)."""
    return sync._SyncObj__transport


def journal(sync) -> Any:
    """The Raft log object (Bazar's DurableJournal for a voter)."""
    return sync._SyncObj__raftLog


def wake_pipe(sync) -> Any:
    """What wakes the tick thread from its poll (`.notify()`), or None when PySyncObj made none."""
    return getattr(sync, "_SyncObj__pipeNotifier", None)
