"""One process's membership in a Raft group.

Besides submitting commands, a member answers two questions for readers:

- `read_index()`: the log index a linearizable read must reflect, confirmed by
  a heartbeat round (Raft's read index, see `consensus.reads`); nothing is
  appended to the log.
- `in_touch(max_lag)`: whether this member's applied state includes every write
  acknowledged more than `max_lag` seconds ago, for reads served from local state.

PySyncObj keeps what both need in private attributes; this module is the one
place that reads them. Both answers are computed on PySyncObj's own tick thread
(`_on_tick`), where its state is consistent; other threads only wait for them.
"""
from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from typing import Any, Callable

from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, SyncObjException

from bazar.consensus.directory import ADD, Directory
from bazar.consensus.reads import NOT_LEADER, LeaderView, ReadIndex
from bazar.consensus.state import ReplicatedState
from bazar.consensus.transport import WatchedTransport

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


class MembershipRefused(Exception):
    """A membership change was refused and nothing changed. `reason` says why, `kind` is
    one of "not_leader" (ask the leader), "busy" (another change is in flight), "quorum"
    (the group would be left without a majority), "unknown" (no such member) or "conflict"
    (the id is a member at another address)."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class BindFailed(Exception):
    """This member could not listen on its Raft address (`address`); `reason` says why
    (usually another process holds the port). Nothing was started; fix it and start again."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"cannot listen for Raft on {address}: {reason}")
        self.address = address
        self.reason = reason


class ReadRefused(Exception):
    """This member cannot serve a linearizable read now (not the leader, or it could not
    confirm its leadership in time). Ask the leader; retrying later is always safe."""


_CANDIDATE, _LEADER = 1, 2  # pysyncobj.syncobj._RAFT_STATE.CANDIDATE, .LEADER
_ROLES = {0: "follower", _CANDIDATE: "candidate", _LEADER: "leader"}

log = logging.getLogger("bazar.raft")
PROBE_KEY = "bazar_probe"  # on append_entries: (sender's nonce, its newest probe round)
ECHO_KEY = "bazar_echo"    # on next_node_idx: the newest probe received from that leader
# On append_entries: how many seconds before sending it the leader last heard from a majority
# of its group, or None while it cannot vouch for its commit index (see RaftMember.in_touch).
MAJORITY_KEY = "bazar_majority_age"


class ProbingTransport(WatchedTransport):
    """Stamps heartbeats with probe rounds and echoes them back (see `consensus.reads`).

    Leader side: every append_entries carries (nonce, round); `echoes[node]` is the
    newest round of *this process* (same nonce) that `node` has echoed. The nonce is
    random per process, so a restarted leader never counts echoes of its previous
    life. Follower side: every next_node_idx carries the newest probe received from
    the node it is sent to. A reply is sent while handling a message, after every
    earlier message on the link, so an echo of round r proves the reply was sent
    after the leader opened round r. Only next_node_idx counts: PySyncObj sends it
    only in answer to an append_entries whose term it accepted, so it also proves
    the follower had not moved past that leader's term. Peers without these keys
    (another version) are simply never counted: reads fail closed.

    Every append_entries also carries `majority_age()`, the sender's answer to "how
    long ago did a majority of my group last answer me" (an age, since clocks differ
    between machines). The receiver turns it into an instant of its own clock, the
    time it received the message minus the age, and keeps it per sender with the
    message's term in `vouched`: the basis of a follower's `RaftMember.in_touch`.
    A message without the key (an older Bazar) or with None vouches for nothing.
    A transport whose `majority_age` is None sends no key, as an older Bazar.
    """

    def __init__(self, *args, **kwargs) -> None:
        self.nonce = int.from_bytes(os.urandom(8), "big")
        self.probe_round = 0
        self.echoes: dict[Any, int] = {}
        self._probes_from: dict[Any, tuple[int, int]] = {}
        self.majority_age: Callable[[], float | None] | None = None  # set by RaftMember
        self.vouched: dict[str, tuple[int, float]] = {}  # sender -> (term, majority heard at)
        super().__init__(*args, **kwargs)

    def send(self, node, message) -> bool:
        if isinstance(message, dict):
            kind = message.get("type")
            if kind == "append_entries":
                message = {**message, PROBE_KEY: (self.nonce, self.probe_round)}
                if self.majority_age is not None:
                    message[MAJORITY_KEY] = self.majority_age()
            elif kind == "next_node_idx" and node in self._probes_from:
                message = {**message, ECHO_KEY: self._probes_from[node]}
        return super().send(node, message)

    def _onMessageReceived(self, node, message) -> None:
        if isinstance(message, dict):
            probe = message.get(PROBE_KEY)
            if probe is not None:
                self._probes_from[node] = probe  # before PySyncObj handles it and replies
            echo = message.get(ECHO_KEY)
            if echo is not None and message.get("type") == "next_node_idx" and echo[0] == self.nonce:
                self.echoes[node] = max(self.echoes.get(node, 0), echo[1])
            age = message.get(MAJORITY_KEY)
            if message.get("type") == "append_entries" and isinstance(age, (int, float)) \
                    and 0 <= age < math.inf:
                address = getattr(node, "address", str(node))
                self.vouched[address] = (message.get("term"), time.monotonic() - age)
        super()._onMessageReceived(node, message)


class _PendingRead:
    """One caller waiting for a read index: set once, from the tick thread."""
    __slots__ = ("done", "outcome")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.outcome: int | str | None = None


class RaftMember:
    """A voting member (self_address set) or a non-voting follower (self_address None)."""

    def __init__(self, self_address: str | None, peers: list[str], state: ReplicatedState,
                 conf: SyncObjConf, directory: Directory | None = None) -> None:
        self.state = state
        # Built by consensus.join from cluster.yaml; a member built without one starts empty.
        self.directory = directory if directory is not None else Directory({})
        self.peers = [p for p in peers if p != self_address]
        self._changing = threading.Lock()  # one membership change at a time from this leader
        # Set while a voter change this member appended has neither committed nor been
        # discarded: a change that timed out here is still in flight (see `_check_change`).
        self._voter_change_in_flight = False
        self._reads = ReadIndex()
        self._reads_lock = threading.Lock()
        self._in_touch_at: float | None = None
        # Watched on the tick thread (`_note_role`): read by metrics, logged at INFO.
        self.leader_changes = 0
        self._role: int | None = None
        self._known_leader: tuple[int, str] | None = None  # (term, address) last counted
        self._handing_off = False  # set by hand_off(); read on the tick thread
        # The consumers' order fixes PySyncObj's method ids in the log: never reorder them.
        self.syncobj = SyncObj(self_address, self.peers, conf=conf, consumers=[state, self.directory],
                               transportClass=ProbingTransport)
        self._transport: ProbingTransport = self.syncobj._SyncObj__transport
        self._transport.majority_age = self._majority_age
        if self_address is not None:
            self._wait_bound(self_address)
        self._wake = getattr(self.syncobj, "_SyncObj__pipeNotifier", None)
        state.add_listener(self)
        self.syncobj.addOnTickCallback(self._on_tick)

    def _wait_bound(self, address: str) -> None:
        """Return once the Raft port is bound; BindFailed when PySyncObj has given up
        (`maxBindRetries`, see consensus/settings.py). PySyncObj keeps the bind's error to
        itself, so a probe bind of the same address finds the reason to report."""
        try:
            self.syncobj.waitBinded()
            return
        except SyncObjException:
            pass
        self.syncobj.destroy()
        host, port = address.rsplit(":", 1)
        bind_host = self.syncobj.conf.bindAddress.rsplit(":", 1)[0] if self.syncobj.conf.bindAddress else host
        reason = "the port could not be bound"
        try:
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as PySyncObj binds
                probe.bind((bind_host, int(port)))
        except OSError as error:
            reason = f"{error.strerror} (is another process using port {port}?)"
        raise BindFailed(address, reason)

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

    def submit_nowait(self, command: dict, on_done) -> None:
        """Propose `command` and return at once; `on_done(result, ok)` is called on the
        tick thread when it is applied (ok True) or refused (ok False, result None).
        One attempt, no retry: for loaders that keep many commands in flight."""
        self.state.apply(command, callback=lambda result, error: on_done(result, error == FAIL_REASON.SUCCESS))

    def on_tick(self, callback) -> None:
        """Call `callback()` on the tick thread after every tick (after this member's own
        bookkeeping, so `in_touch` and `leader` are current). It must not block, and it
        must never wait for a commit: the tick thread is what would commit it."""
        self.syncobj.addOnTickCallback(callback)

    def wait_applied(self, index: int, timeout: float) -> bool:
        """Block until this member has applied `index`; False on timeout."""
        return self.state.wait_for(index, timeout)

    # -- reads ------------------------------------------------------------------

    def read_index(self, timeout: float) -> int:
        """Wait until this member's state may serve a linearizable read; return the read
        index: this leader's commit index, confirmed by a majority's answer to a
        heartbeat sent after it was taken, and already applied here.

        Appends nothing to the log. Raises ReadRefused when this member is not the
        leader, loses leadership meanwhile, or cannot confirm within `timeout` (cut
        off from the majority, or a new leader whose first entry has not committed).
        """
        pending = _PendingRead()
        with self._reads_lock:
            self._reads.add(pending)
        if self._wake is not None:
            self._wake.notify()  # the tick thread may be asleep in poll for a heartbeat period
        if not pending.done.wait(timeout):
            with self._reads_lock:
                self._reads.drop(pending)
            if pending.outcome is None:
                raise ReadRefused("could not confirm leadership with a majority in time")
        if not isinstance(pending.outcome, int):
            raise ReadRefused(pending.outcome or NOT_LEADER)
        return pending.outcome

    def in_touch(self, max_lag: float) -> bool:
        """True if this member has applied every write acknowledged (by any leader) more
        than `max_lag` seconds ago, as far as it can know.

        Both roles count from the last time a majority of the group answered the leader:
        after that instant, no other leader can have been elected, so no write this
        member lacks can have been acknowledged before it. A leader counts once an
        entry of its own term is applied (before that it may not have applied what the
        previous leader committed). A follower counts from the majority instant its
        leader stamped on a message of the current term whose announced commit index
        it has applied (`ProbingTransport`, the leader stamps only once an entry of its
        term has committed): the time it received the message minus the age the leader
        wrote in it. So a deposed leader cut off with some followers, still sending them
        heartbeats, keeps none of them in touch for longer than `max_lag` after it last
        heard from its majority. The instant is that of the answer's *arrival* at the
        leader and of the stamped message's arrival here, so one network delay each
        way is not counted. A leader that stamps nothing (an older Bazar, during a
        rolling upgrade) keeps no follower in touch: local reads fail closed until an
        upgraded member leads. Re-evaluated on every tick; False until first in touch
        and after the state is replaced by a snapshot.
        """
        since = self._in_touch_at
        return since is not None and time.monotonic() - since <= max_lag

    def seconds_since_leader(self) -> float | None:
        """How long since this member last heard from its leader (None: no leader known)."""
        leader = self.leader
        if leader is None:
            return None
        heard = self._transport.last_heard.get(leader)
        return None if heard is None else time.monotonic() - heard

    # -- membership -----------------------------------------------------------

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
        first = sync._SyncObj__noopIDx
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
            raise CommitError(_REASONS.get(outcome[0], str(outcome[0])), definite=outcome[0] == FAIL_REASON.REQUEST_DENIED)

    def submit_to(self, method, argument, timeout: float) -> Any:
        """Commit a call of a replicated method other than the state machine's (the directory's)."""
        done = threading.Event()
        outcome: list = []

        def on_result(result: Any, error: int) -> None:
            outcome.append((result, error))
            done.set()

        method(argument, callback=on_result)
        if not done.wait(timeout):
            raise CommitError("timeout", definite=False)
        result, error = outcome[0]
        if error != FAIL_REASON.SUCCESS:
            raise CommitError(_REASONS.get(error, str(error)), definite=error not in _MAYBE_APPLIED)
        return result

    # -- leaving --------------------------------------------------------------

    def hand_off(self, timeout: float) -> bool:
        """If this member leads, hand leadership to an up-to-date follower before it stops,
        so the group has a leader again within a round trip instead of an election timeout.

        PySyncObj 0.3.17 implements Raft's leadership transfer (`transferLeadership`, the
        TimeoutNow message): it picks the connected follower with the highest match index
        and asks it to stand for election at once, but only while that follower holds every
        entry of the leader's log (so it wins the vote). Under load a follower is often one
        entry behind, so the request is repeated on every tick until a new leader is known
        or `timeout` passes. Returns True when this member is not (or no longer) the leader
        and another one is known; False if no follower took over in time, in which case
        the group elects one once this member stops (the election timeout later).
        """
        if not self.is_leader:
            return True
        self._handing_off = True
        if self._wake is not None:
            self._wake.notify()
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                leader = self.leader
                if not self.is_leader and leader is not None and leader != self.syncobj.selfNode.address:
                    return True
                time.sleep(0.005)
            return False
        finally:
            self._handing_off = False

    # -- PySyncObj's tick thread ------------------------------------------------

    def _on_tick(self) -> None:
        sync = self.syncobj
        leading = sync._SyncObj__raftState == _LEADER
        if leading and self._handing_off:
            # Denied (no reply sent) while no connected follower holds the whole log.
            sync.transferLeadership()
        others = sync._SyncObj__otherNodes
        noop = sync._SyncObj__noopIDx
        view = LeaderView(
            leader=leading, term=sync.raftCurrentTerm, commit_index=sync.raftCommitIndex,
            applied_index=sync.raftLastApplied,
            term_committed=leading and noop is not None and sync.raftCommitIndex >= noop,
            echoes=tuple(self._transport.echoes.get(node, 0) for node in others))
        with self._reads_lock:
            if self._reads.pending:
                finished, opened = self._reads.step(view)
            else:
                finished, opened = [], False
        if opened:
            self._transport.probe_round = self._reads.round
            sync._SyncObj__sendAppendEntries()  # the round's heartbeat, now
        for pending, outcome in finished:
            pending.outcome = outcome
            pending.done.set()
        self._note_in_touch(sync, leading, noop, others)
        self._note_role(sync)

    def _note_role(self, sync) -> None:
        """Count leader changes and log elections and role changes (a voter's), as they happen.

        A leader change is a leader for a new term: counted once per (term, leader) seen, so
        a node elected again in a later term counts too. PySyncObj clears the leader when the
        term moves on, and sets the term with the leader, so no tick sees a stale pair."""
        role = sync._SyncObj__raftState
        if role != self._role and sync.selfNode is not None:
            if role == _CANDIDATE:
                log.info("starting an election for term %d", sync.raftCurrentTerm)
            elif self._role is not None or role == _LEADER:
                log.info("now %s in term %d (was %s)", _ROLES.get(role, role), sync.raftCurrentTerm,
                         _ROLES.get(self._role, "starting"))
        self._role = role
        leader = sync._SyncObj__raftLeader
        address = None if leader is None else getattr(leader, "address", str(leader))
        if address is not None and (sync.raftCurrentTerm, address) != self._known_leader:
            self.leader_changes += 1
            self._known_leader = (sync.raftCurrentTerm, address)
            if sync.selfNode is not None:
                log.info("leader is now %s (term %d)", address, sync.raftCurrentTerm)

    def _note_in_touch(self, sync, leading: bool, noop, others) -> None:
        applied = sync.raftLastApplied
        if leading:
            if noop is None or applied < noop or applied < sync.raftCommitIndex:
                return
            self._in_touch_at = self._majority_answered(sync, others)
            return
        leader = sync._SyncObj__raftLeader
        announced = sync._SyncObj__leaderCommitIndex
        if leader is None or announced is None or applied < announced:
            return
        vouched = self._transport.vouched.get(getattr(leader, "address", str(leader)))
        if vouched is not None and vouched[0] == sync.raftCurrentTerm:
            self._in_touch_at = vouched[1]

    @staticmethod
    def _majority_answered(sync, others) -> float:
        """When a majority of the group (this leader included) last answered this leader."""
        answered = sorted((sync._SyncObj__lastResponseTime.get(node, 0.0) for node in others),
                          reverse=True)
        needed = (len(others) + 1) // 2
        return answered[needed - 1] if needed else time.monotonic()

    def _majority_age(self) -> float | None:
        """The stamp on this member's append_entries (tick thread, as it sends): seconds since
        a majority last answered it, while it leads and an entry of its term has committed
        (so its commit index covers every earlier leader's); None otherwise."""
        sync = self.syncobj
        noop = sync._SyncObj__noopIDx
        if sync._SyncObj__raftState != _LEADER or noop is None or sync.raftCommitIndex < noop:
            return None
        return max(0.0, time.monotonic() - self._majority_answered(sync, sync._SyncObj__otherNodes))

    # ApplyListener (tick thread): a snapshot replaced the state, so it was not in touch.
    def on_applied(self, index: int, command: dict, result: Any) -> None:
        pass

    def on_reset(self, index: int) -> None:
        self._in_touch_at = None

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
            role = _ROLES.get(sync._SyncObj__raftState, "unknown")
        return {
            "role": role,
            "term": sync.raftCurrentTerm,
            "commit_index": sync.raftCommitIndex,
            "applied_index": sync.raftLastApplied,
            "leader": self.leader,
            "has_quorum": sync.hasQuorum,
            "peers": {str(node.address): sync.isNodeConnected(node) for node in sync.otherNodes},
        }

    def raft_port_stats(self) -> dict:
        """What the guards of this member's Raft port did (see consensus/transport.py):
        {"closed": {reason: count}, "listener_rebinds": n, "strangers": n held now}."""
        return self._transport.port_stats()

    @property
    def journal_bytes(self) -> int | None:
        """The size of this member's journal file (None for a non-voting follower, which keeps none)."""
        return getattr(self.syncobj._SyncObj__raftLog, "size_bytes", None)

    def on_fsync(self, callback) -> None:
        """Call `callback(seconds)` after every fsync of this member's journal (on the tick
        thread: it must return at once). A member without a journal file never calls it."""
        journal = self.syncobj._SyncObj__raftLog
        if hasattr(journal, "on_fsync"):
            journal.on_fsync = callback

    def close(self) -> None:
        """Stop the member and wait until its tick thread has released the journal and port."""
        self.syncobj.destroy_synchronous()
