"""One process's membership in a Raft group.

Besides submitting commands, a member answers two questions for readers:

- `read_index()`: the log index a linearizable read must reflect, confirmed by
  a heartbeat round (Raft's read index, see `consensus.reads`); nothing is
  appended to the log.
- `in_touch(max_lag)`: whether this member's applied state includes every write
  acknowledged more than `max_lag` seconds ago, for reads served from local state.

PySyncObj keeps what both need in private attributes; this module reads them, each
by name, through `consensus.syncobj_private`. Both answers are computed on PySyncObj's
own tick thread (`_on_tick`), where its state is consistent; other threads only wait
for them. The transport that carries what they need is `consensus.probing`; changing
the membership is `consensus.membership`; how a member fails is `consensus.errors`.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, SyncObjException

from bazar.consensus import group_commit, raft_fixes, syncobj_private as private
from bazar.consensus.directory import Directory
from bazar.consensus.errors import MAYBE_APPLIED, BindFailed, CommitError, ReadRefused, failure_reason
from bazar.consensus.membership import MembershipChanges
from bazar.consensus.probing import ProbeStamps, ProbingTransport
from bazar.consensus.reads import NOT_LEADER, LeaderView, ReadIndex
from bazar.consensus.state import ReplicatedState

_RETRY_PAUSE = 0.02
_ROLES = {private.FOLLOWER: "follower", private.CANDIDATE: "candidate", private.LEADER: "leader"}

log = logging.getLogger("bazar.raft")


class _PendingRead:
    """One caller waiting for a read index: set once, from the tick thread."""
    __slots__ = ("done", "outcome")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.outcome: int | str | None = None


class RaftMember(MembershipChanges):
    """A voting member (self_address set) or a non-voting follower (self_address None)."""

    def __init__(self, self_address: str | None, peers: list[str], state: ReplicatedState,
                 conf: SyncObjConf, directory: Directory | None = None) -> None:
        self.state = state
        # Built by consensus.join from cluster.yaml; a member built without one starts empty.
        self.directory = directory if directory is not None else Directory({})
        self.peers = [p for p in peers if p != self_address]
        super().__init__()  # MembershipChanges: one change at a time (consensus/membership.py)
        self._init_reads()
        # The consumers' order fixes PySyncObj's method ids in the log: never reorder them.
        self.syncobj = SyncObj(self_address, self.peers, conf=conf, consumers=[state, self.directory],
                               transportClass=ProbingTransport)
        self._transport: ProbeStamps = private.transport(self.syncobj)
        self._transport.majority_age = self._majority_age
        if self_address is not None:
            self._wait_bound(self_address)
        self._wake = private.wake_pipe(self.syncobj)
        state.add_listener(self)
        self.syncobj.addOnTickCallback(self._on_tick)

    def _init_reads(self) -> None:
        self._reads = ReadIndex()
        self._reads_lock = threading.Lock()
        self._in_touch_at: float | None = None
        # Watched on the tick thread (`_note_role`): read by metrics, logged at INFO.
        self.leader_changes = 0
        self._role: int | None = None
        self._known_leader: tuple[int, str] | None = None  # (term, address) last counted
        self._handing_off = False  # set by hand_off(); read on the tick thread

    @classmethod
    def over(cls, syncobj: SyncObj) -> "RaftMember":
        """The read side of a member (read index, in-touch rule, role watch) over a SyncObj
        built elsewhere, whose transport is a `ProbeStamps`: the simulator's replicas
        (tests/sim/reads.py) run this code, not a copy of it. It has no Bazar state machine
        (call `on_reset` when the SyncObj's state is replaced by a snapshot) and no
        directory: reads and `in_touch` only."""
        member = cls.__new__(cls)
        MembershipChanges.__init__(member)
        member._init_reads()
        member.syncobj = syncobj
        member._transport = private.transport(syncobj)
        member._transport.majority_age = member._majority_age
        member._wake = private.wake_pipe(syncobj)
        syncobj.addOnTickCallback(member._on_tick)
        return member

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

    def submit(self, command: dict, timeout: float, first: tuple = ()) -> Any:
        """Commit `command` and return what the state machine's apply returned.

        Raises CommitError when the command is not applied within `timeout`.
        After a timeout the command may still commit later (definite=False), so
        every command must be safe to apply twice. `first`: (command, on_done) pairs
        nobody waits for (see `submit_nowait`), proposed just before it, in the same round.
        """
        deadline = time.monotonic() + timeout
        maybe_applied = False
        while True:
            result, error = self._submit_once(command, deadline, first)
            first = ()
            if error == FAIL_REASON.SUCCESS:
                return result
            maybe_applied = maybe_applied or error is None or error in MAYBE_APPLIED
            # Every Bazar command is idempotent, so trying again is always safe.
            if error is None or time.monotonic() + _RETRY_PAUSE >= deadline:
                reason = "timeout" if error is None else failure_reason(error)
                raise CommitError(reason, definite=not maybe_applied)
            time.sleep(_RETRY_PAUSE)

    def _submit_once(self, command: dict, deadline: float, first: tuple = ()) -> tuple[Any, int | None]:
        """One attempt: (result, PySyncObj's error code), or (None, None) at the deadline."""
        done = threading.Event()
        outcome: list = []

        def on_result(result: Any, error: int) -> None:
            outcome.append((result, error))
            done.set()

        self._propose([*self._nowait(first), (command, on_result)])
        if not done.wait(max(0.0, deadline - time.monotonic())):
            return None, None
        return outcome[0]

    def submit_many(self, commands: list[dict], timeout: float, first: tuple = ()) -> list[tuple[bool, Any]]:
        """Commit `commands` together: all are proposed at once, after `first` (as in
        `submit`), in one round (`group_commit.proposing_together`), then each that was
        refused is tried again alone (`submit`) while time is left. Returns, per command and
        in order, (True, what apply returned) or (False, None) when it was not applied
        within `timeout`; like `submit`, such a command may still commit later."""
        deadline = time.monotonic() + timeout
        outcomes: list = [None] * len(commands)
        left = threading.Semaphore(0)

        def on_result(position: int, result: Any, error: int) -> None:
            outcomes[position] = (result, error)
            left.release()

        self._propose([*self._nowait(first)] + [
            (command, lambda result, error, p=position: on_result(p, result, error))
            for position, command in enumerate(commands)])
        for _ in commands:
            if not left.acquire(timeout=max(0.0, deadline - time.monotonic())):
                break
        answers: list[tuple[bool, Any]] = []
        for command, outcome in zip(commands, outcomes):
            if outcome is not None and outcome[1] == FAIL_REASON.SUCCESS:
                answers.append((True, outcome[0]))
                continue
            remaining = deadline - time.monotonic()
            if outcome is None or remaining <= _RETRY_PAUSE:
                answers.append((False, None))
                continue
            try:
                answers.append((True, self.submit(command, remaining)))
            except CommitError:
                answers.append((False, None))
        return answers

    def submit_nowait(self, command: dict, on_done) -> None:
        """Propose `command` and return at once; `on_done(result, ok)` is called on the
        tick thread when it is applied (ok True) or refused (ok False, result None).
        One attempt, no retry: for loaders that keep many commands in flight."""
        self.submit_nowait_many([(command, on_done)])

    def submit_nowait_many(self, pairs) -> None:
        """`submit_nowait` for several (command, on_done) pairs, proposed together (one round)."""
        self._propose(self._nowait(pairs))

    @staticmethod
    def _nowait(pairs) -> list:
        """(command, on_done(result, ok)) pairs as (command, PySyncObj callback) pairs."""
        return [(command, lambda result, error, on_done=on_done: on_done(result, error == FAIL_REASON.SUCCESS))
                for command, on_done in pairs]

    def _propose(self, pairs: list) -> None:
        """Submit (command, callback) pairs in one go: the leader takes them off its queue
        together and sends them in one round (`group_commit.proposing_together`)."""
        with group_commit.proposing_together(self.syncobj):
            for command, callback in pairs:
                self.state.apply(command, callback=callback)

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
        leader stamped on a message of the current term once it has applied the commit
        index announced by that same message (`ProbingTransport`, the leader stamps only once an entry of its
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
            raise CommitError(failure_reason(error), definite=error not in MAYBE_APPLIED)
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
        and another one is known; False if no follower took over in time, or none is
        connected to take over (then at once: a whole group stopped together has no
        follower left by the time its leader looks), in which case the group elects one
        once this member stops (the election timeout later).
        """
        if not self.is_leader:
            return True
        self._handing_off = True
        if self._wake is not None:
            self._wake.notify()
        sync = self.syncobj
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                leader = self.leader
                if not self.is_leader and leader is not None and leader != sync.selfNode.address:
                    return True
                if not any(sync.isNodeConnected(node) for node in sync.otherNodes):
                    return False
                time.sleep(0.005)
            return False
        finally:
            self._handing_off = False

    # -- PySyncObj's tick thread ------------------------------------------------

    def _on_tick(self) -> None:
        sync = self.syncobj
        leading = private.role(sync) == private.LEADER
        if leading and self._handing_off:
            # Denied (no reply sent) while no connected follower holds the whole log.
            sync.transferLeadership()
        others = private.peer_nodes(sync)
        noop = private.first_index_of_term(sync)
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
            private.send_heartbeats(sync)  # the round's heartbeat, now
        for pending, outcome in finished:
            pending.outcome = outcome
            pending.done.set()
        self._note_in_touch(sync, leading, noop, others)
        self._note_role(sync)
        raft_fixes.ask_for_the_leader(sync)

    def _note_role(self, sync) -> None:
        """Count leader changes and log elections and role changes (a voter's), as they happen.

        A leader change is a leader for a new term: counted once per (term, leader) seen, so
        a node elected again in a later term counts too. PySyncObj clears the leader when the
        term moves on, and sets the term with the leader, so no tick sees a stale pair."""
        role = private.role(sync)
        if role != self._role and sync.selfNode is not None:
            if role == private.CANDIDATE:
                log.info("starting an election for term %d", sync.raftCurrentTerm)
            elif self._role is not None or role == private.LEADER:
                log.info("now %s in term %d (was %s)", _ROLES.get(role, role), sync.raftCurrentTerm,
                         _ROLES.get(self._role, "starting"))
        self._role = role
        leader = private.leader_node(sync)
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
        leader = private.leader_node(sync)
        if leader is None:
            return
        vouched = self._transport.vouched.get(getattr(leader, "address", str(leader)))
        if vouched is None:
            return
        term, majority_at, announced = vouched
        # The commit index of the stamped message itself: a message the leader sent before
        # it, delivered after it, announces less, and that says nothing of the stamp.
        if term == sync.raftCurrentTerm and announced is not None and applied >= announced:
            self._in_touch_at = majority_at

    @staticmethod
    def _majority_answered(sync, others) -> float:
        """When a majority of the group (this leader included) last answered this leader."""
        answered = sorted((private.last_response_times(sync).get(node, 0.0) for node in others),
                          reverse=True)
        needed = (len(others) + 1) // 2
        return answered[needed - 1] if needed else time.monotonic()

    def _majority_age(self) -> float | None:
        """The stamp on this member's append_entries (tick thread, as it sends): seconds since
        a majority last answered it, while it leads and an entry of its term has committed
        (so its commit index covers every earlier leader's); None otherwise."""
        sync = self.syncobj
        noop = private.first_index_of_term(sync)
        if private.role(sync) != private.LEADER or noop is None or sync.raftCommitIndex < noop:
            return None
        return max(0.0, time.monotonic() - self._majority_answered(sync, private.peer_nodes(sync)))

    # ApplyListener (tick thread): a snapshot replaced the state, so it was not in touch.
    def on_applied(self, index: int, command: dict, result: Any) -> None:
        pass

    def on_reset(self, index: int) -> None:
        self._in_touch_at = None

    @property
    def leader_commit_index(self) -> int | None:
        """The commit index the leader last announced to this member."""
        return private.announced_commit_index(self.syncobj)

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
            role = _ROLES.get(private.role(sync), "unknown")
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
        return getattr(private.journal(self.syncobj), "size_bytes", None)

    def on_fsync(self, callback) -> None:
        """Call `callback(seconds)` after every fsync of this member's journal (on the tick
        thread: it must return at once). A member without a journal file never calls it."""
        journal = private.journal(self.syncobj)
        if hasattr(journal, "on_fsync"):
            journal.on_fsync = callback

    def close(self) -> None:
        """Stop the member and wait until its tick thread has released the journal and port."""
        self.syncobj.destroy_synchronous()
