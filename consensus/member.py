"""One process's membership in a Raft group."""
from __future__ import annotations

import threading
import time
from typing import Any

from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf

from consensus.state import ReplicatedState
from consensus.transport import WatchedTransport

_REASONS = {value: name.lower() for name, value in vars(FAIL_REASON).items() if name.isupper()}
# After these failures the command may still be in some leader's log and commit.
_MAYBE_APPLIED = {FAIL_REASON.LEADER_CHANGED, FAIL_REASON.UNKNOWN_OUTCOME}
_RETRY_PAUSE = 0.02


class CommitError(Exception):
    """A command was not applied. `definite` tells whether it certainly never will be."""

    def __init__(self, reason: str, definite: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.definite = definite


class RaftMember:
    """A voting member (self_address set) or a non-voting follower (self_address None)."""

    def __init__(self, self_address: str | None, peers: list[str], state: ReplicatedState,
                 conf: SyncObjConf) -> None:
        self.state = state
        self.peers = [p for p in peers if p != self_address]
        self.syncobj = SyncObj(self_address, self.peers, conf=conf, consumers=[state],
                               transportClass=WatchedTransport)

    def submit(self, command: dict, timeout: float) -> Any:
        """Commit `command` and return what the state machine's apply returned.

        Raises CommitError when the command is not applied within `timeout`.
        After a timeout the command may still commit later (definite=False), so
        every command must be safe to apply twice.
        """
        deadline = time.monotonic() + timeout
        maybe_applied = False
        while True:
            result, error = self._submit_once(command, deadline)
            if error == FAIL_REASON.SUCCESS:
                return result
            maybe_applied = maybe_applied or error is None or error in _MAYBE_APPLIED
            # Every Bazar command is idempotent, so trying again is always safe.
            if error is None or time.monotonic() + _RETRY_PAUSE >= deadline:
                reason = "timeout" if error is None else _REASONS.get(error, str(error))
                raise CommitError(reason, definite=not maybe_applied)
            time.sleep(_RETRY_PAUSE)

    def _submit_once(self, command: dict, deadline: float) -> tuple[Any, int | None]:
        """One attempt: (result, PySyncObj's error code), or (None, None) at the deadline."""
        done = threading.Event()
        outcome: list = []

        def on_result(result: Any, error: int) -> None:
            outcome.append((result, error))
            done.set()

        self.state.apply(command, callback=on_result)
        if not done.wait(max(0.0, deadline - time.monotonic())):
            return None, None
        return outcome[0]

    def wait_applied(self, index: int, timeout: float) -> bool:
        """Block until this member has applied `index`; False on timeout."""
        return self.state.wait_for(index, timeout)

    def seconds_since_leader(self) -> float | None:
        """How long since this member last heard from its leader (None: no leader known)."""
        leader = self.leader
        if leader is None:
            return None
        transport = self.syncobj._SyncObj__transport
        heard = transport.last_heard.get(leader)
        return None if heard is None else time.monotonic() - heard

    @property
    def leader_commit_index(self) -> int | None:
        """The commit index the leader last announced to this member."""
        return self.syncobj._SyncObj__leaderCommitIndex

    @property
    def has_caught_up(self) -> bool:
        """True once this member has applied what the leader had committed when it joined
        (after a restart it replays its journal first, passing through old states)."""
        return self.syncobj.isReady()

    @property
    def is_leader(self) -> bool:
        return self.syncobj._isLeader()

    @property
    def leader(self) -> str | None:
        """The address of the leader this member last heard from."""
        node = self.syncobj._getLeader()
        return node.address if node is not None else None

    def status(self) -> dict:
        """Role, term, indexes, leader and links, as this member sees them."""
        sync = self.syncobj
        if sync.selfNode is None:
            role = "follower (non-voting)"
        else:
            role = {0: "follower", 1: "candidate", 2: "leader"}.get(sync.getStatus()["state"], "unknown")
        return {
            "role": role,
            "term": sync.raftCurrentTerm,
            "commit_index": sync.raftCommitIndex,
            "applied_index": sync.raftLastApplied,
            "leader": self.leader,
            "has_quorum": sync.hasQuorum,
            "peers": {str(node.address): sync.isNodeConnected(node) for node in sync.otherNodes},
        }

    def close(self) -> None:
        """Stop the member and wait until its tick thread has released the journal and port."""
        self.syncobj.destroy_synchronous()
