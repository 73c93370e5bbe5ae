"""Linearizable reads that write nothing to the log: Raft's *read index*.

A read that promises the leader's view (a catalog `consistency=strong` read, the
order list) must reflect every write acknowledged before the read began. Sending
the read through the log does that, but appends an entry per read, so anyone
could grow the log. Instead (Ongaro, "Consensus: Bridging Theory and Practice",
§6.4), the leader:

1. checks that an entry of its current term has committed, so its commit index
   covers every entry any earlier leader committed (leader completeness);
2. takes its commit index as the read's *read index*;
3. confirms it was still the leader *after* step 2: a heartbeat round sent after
   step 2 is answered by a majority of the group (itself included);
4. answers once it has applied up to the read index (Raft's own applied index,
   which also counts the no-op entries that never reach the state machine).

Why 3 is enough: an answer to a heartbeat of term T means its sender had not
moved past term T when it answered. If a majority did so after step 2, no leader
of a later term can have committed anything before step 2 (its majority and ours
would share a member whose term went backwards). So every write acknowledged
before the read began has an index <= the read index.

No clocks are involved: the confirmation is by message order, not by time, so a
paused leader or a skewed clock cannot make it serve a stale read. (A *lease*,
answering for an election timeout after a majority's last answer, saves the
round trip but is not safe with PySyncObj 0.3.17: its followers vote for a
candidate even right after hearing from a live leader, so a leader can be
deposed well inside any lease.)

How a heartbeat is known to be newer than step 2: `consensus.probing` stamps
every append-entries message with the leader's current *probe round*, and every
follower reply carries back the newest round it has received from that leader.
Reads admitted in one tick share one new round; an echo of that round or a
later one can only be on a reply sent after the follower received a message the
leader sent after the read was admitted.

This module is the bookkeeping only: a pure state machine, stepped by its owner
on PySyncObj's tick thread with what the leader knows at that instant. Not
thread-safe; `RaftMember` serialises access.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Hashable

NOT_LEADER = "not the leader"


@dataclass(frozen=True)
class LeaderView:
    """What this member knows at one instant, read on the tick thread."""
    leader: bool            # it believes it is the leader
    term: int
    commit_index: int
    applied_index: int      # Raft's last applied index (no-ops included)
    term_committed: bool    # an entry of `term` has committed (its first no-op)
    echoes: tuple[int, ...]  # per other voter: the newest probe round it has echoed (0: none)

    def confirmed_round(self) -> float:
        """The newest probe round that a majority of the group (this member included) has
        echoed; infinite for a group of one, whose majority is itself."""
        needed = (len(self.echoes) + 1) // 2  # other voters needed beside this one
        if needed == 0:
            return math.inf
        return sorted(self.echoes, reverse=True)[needed - 1]


@dataclass
class _Admitted:
    index: int
    term: int
    round: int


class ReadIndex:
    """Reads waiting for the leader: admitted (read index taken), then confirmed.

    Contract: `add(token)` queues a read; each `step(view)` returns the reads it
    finished, as (token, read index) or (token, NOT_LEADER), and whether a new
    probe round was opened (the owner must then send a heartbeat at once so the
    round is answered quickly). A read is never finished with an index unless a
    majority echoed a round opened after its index was taken, in the same term
    in which it was admitted, and this member has applied up to that index (so
    the caller can read its state at once). Reads that cannot be admitted yet (a new leader
    whose first entry has not committed) wait; `drop(token)` forgets a read whose
    caller gave up.
    """

    def __init__(self) -> None:
        self.round = 0  # the newest probe round opened; heartbeats carry it from now on
        self._waiting: list[Hashable] = []
        self._admitted: dict[Hashable, _Admitted] = {}

    def add(self, token: Hashable) -> None:
        self._waiting.append(token)

    def drop(self, token: Hashable) -> None:
        if token in self._waiting:
            self._waiting.remove(token)
        self._admitted.pop(token, None)

    @property
    def pending(self) -> int:
        return len(self._waiting) + len(self._admitted)

    def step(self, view: LeaderView) -> tuple[list[tuple[Hashable, int | str]], bool]:
        """Admit waiting reads and finish confirmed ones; see the class contract."""
        finished: list[tuple[Hashable, int | str]] = []
        opened = False
        if self._waiting and not view.leader:
            finished += [(token, NOT_LEADER) for token in self._waiting]
            self._waiting = []
        elif self._waiting and view.term_committed:
            self.round += 1
            opened = True
            for token in self._waiting:
                self._admitted[token] = _Admitted(view.commit_index, view.term, self.round)
            self._waiting = []
        # Echoes in `view` predate any round opened just now, so only a group of one
        # (confirmed_round infinite) can confirm a read in the step that admitted it.
        confirmed = view.confirmed_round() if view.leader else -1
        for token, read in list(self._admitted.items()):
            if not view.leader or view.term != read.term:
                finished.append((token, NOT_LEADER))
            elif confirmed >= read.round and view.applied_index >= read.index:
                finished.append((token, read.index))
            else:
                continue
            del self._admitted[token]
        return finished, opened
