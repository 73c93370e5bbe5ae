"""Changing who belongs to a Raft group: one member at a time, checked before anything
is written to the log (Raft's single-server changes).

`MembershipChanges` is a mixin of `RaftMember`; it uses the member's `syncobj`,
`directory`, `is_leader`, `hand_off` and `submit_to`. PySyncObj 0.3.17 appends a change
asked of it without any of these checks; consensus/raft_fixes.py (changes forwarded by
followers) and consensus/admin_guard.py (the Raft port's admin commands) close the other
ways in, so every change goes through `change_membership`.
"""
from __future__ import annotations

import threading
from typing import Any

from pysyncobj import FAIL_REASON

from bazar.consensus.directory import ADD
from bazar.consensus.errors import CommitError, MembershipRefused, failure_reason
from bazar.consensus.syncobj_private import first_index_of_term


class MembershipChanges:
    """Adding and removing members, on the leader; refusals before anything is written."""

    def __init__(self) -> None:
        self._changing = threading.Lock()  # one membership change at a time from this leader
        # Set while a voter change this member appended has neither committed nor been
        # discarded: a change that timed out here is still in flight (see `_check_change`).
        self._voter_change_in_flight = False

    def change_membership(self, change: dict, timeout: float) -> dict:
        """Add a member ({"op": "add", "id", "raft", "http"}) or remove one ({"op": "remove",
        "id", "raft"}); return the directory once the change has committed. Only on the leader.

        Two entries, both idempotent, so a change cut short (a timeout, a leader change)
        is finished by running it again: first the directory record, so every process
        knows the member's addresses before it votes (and stops sending it requests
        before it leaves); then PySyncObj's own membership entry, which makes it a voter
        or not (skipped when the Raft configuration already says so).

        Refused (MembershipRefused, nothing changed) on a follower, while another change
        is in flight, when the group would be left without a majority of members in
        touch with this leader, and for a member that is not in the group. A leader asked
        to remove itself hands leadership over first and refuses as "not_leader": the
        caller asks the new leader, which can remove it.
        """
        if not self._changing.acquire(blocking=False):
            raise MembershipRefused("busy", "another membership change is in flight; try again when it is done")
        try:
            self._check_change(change)
            self.submit_to(self.directory.record, change, timeout)
            address = change["raft"]
            if (address in self._voters()) != (change["op"] == ADD):
                self._change_voters(change["op"], address, timeout)
            return self.directory.view()
        finally:
            self._changing.release()

    def _check_change(self, change: dict) -> None:
        if not self.is_leader:
            raise MembershipRefused("not_leader", "only the leader changes the membership; ask it")
        self._check_none_in_flight()
        sync = self.syncobj
        voters = self._voters()
        me = sync.selfNode.address
        in_touch = {me} | {str(node.address) for node in sync.otherNodes if sync.isNodeConnected(node)}
        known = self.directory.get(change["id"])
        if known is not None and known["raft"] != change["raft"]:
            raise MembershipRefused("conflict", f"{change['id']} is a member at {known['raft']}, "
                                               f"not {change['raft']}")
        if change["op"] == ADD:
            after = voters | {change["raft"]}
        else:
            address = change["raft"]
            if known is None and address not in voters:
                raise MembershipRefused("unknown", f"{change['id']} is not a member of this group")
            after = voters - {address}
            if not after:
                raise MembershipRefused("quorum", "the last member of a group cannot be removed")
        majority = len(after) // 2 + 1
        live = len(after & in_touch)
        if live < majority:
            raise MembershipRefused("quorum", f"the group would have {len(after)} members, "
                                              f"of which only {live} are in touch with the leader, "
                                              f"fewer than the {majority} needed for a majority")
        if change["op"] != ADD and change["raft"] == me:
            if self.hand_off(timeout=1.0):
                raise MembershipRefused("not_leader", f"{change['id']} was the leader and has handed "
                                                      f"leadership over; ask the new leader to remove it")
            raise MembershipRefused("busy", f"{change['id']} leads the group and no follower could take "
                                            f"over in time; try again")

    def _check_none_in_flight(self) -> None:
        """Refuse while a membership change may still be uncommitted in this leader's log:
        Raft changes the membership one member at a time, each committed before the next.

        PySyncObj 0.3.17 keeps no usable record of it (its `__changeClusterIDx` is never
        set), so two cases are told apart here: a voter change this leader appended that
        timed out (`_change_voters`; cleared when PySyncObj reports it committed or
        discarded), and, on a new leader, a change an earlier leader appended, which is
        committed at the latest with this leader's first entry of its term."""
        sync = self.syncobj
        first = first_index_of_term(sync)
        if first is None or sync.raftLastApplied < first:
            raise MembershipRefused("busy", "this leader was just elected and a membership change of the "
                                            "previous one may still be in flight; try again in a moment")
        if self._voter_change_in_flight:
            raise MembershipRefused("busy", "a membership change that did not commit in time is still in "
                                            "flight; try again when it is done")

    def _voters(self) -> set[str]:
        """The Raft addresses of the group's voting members, as PySyncObj holds them now."""
        sync = self.syncobj
        return {str(node.address) for node in sync.otherNodes} | {sync.selfNode.address}

    def _change_voters(self, op: str, address: str, timeout: float) -> None:
        done = threading.Event()
        outcome: list = []

        def on_result(result: Any, error: int) -> None:
            self._voter_change_in_flight = False
            outcome.append(error)
            done.set()

        change = self.syncobj.addNodeToCluster if op == ADD else self.syncobj.removeNodeFromCluster
        self._voter_change_in_flight = True
        change(address, callback=on_result)
        if not done.wait(timeout):
            raise CommitError("timeout", definite=False)
        if outcome[0] != FAIL_REASON.SUCCESS:
            raise CommitError(failure_reason(outcome[0]), definite=outcome[0] == FAIL_REASON.REQUEST_DENIED)
