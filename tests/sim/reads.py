"""Bazar's reads inside the simulator, checked against what was acknowledged.

`ReadSimulation` is a `harness.Simulation` whose replicas carry Bazar's own read side,
not a model of it: every SyncObj talks through `consensus.probing.ProbeStamps` (probe
rounds and the leader's majority-age stamp, on the simulated network) and has a
`consensus.member.RaftMember` over it (`RaftMember.over`), whose `_on_tick` steps the
read index (`consensus.reads.ReadIndex`) and keeps the in-touch instant, on the
replica's own tick. Both modules read the simulation's clock (their `time` is swapped
for a `VirtualClock` while the simulation is open, as PySyncObj's is).

Reads
-----
- *Read-index reads* (`read`): queued at a replica as `RaftMember.read_index` queues
  them; answered on a later tick of that replica if its `ReadIndex` finishes them with an
  index (a replica that is not the leader, or loses leadership, refuses them). The
  answer is the replica's applied state right after that tick: the read's caller reads
  it at once. Check (linearizability): the answer holds every write acknowledged before
  the read was queued.
- *Local reads* (`local_read`, and one at every live replica after every step and
  round): answered only while the replica counts itself in touch
  (`RaftMember.in_touch(BOUND)`, BOUND = cache.max_follower_lag, 1.0 s), with its applied
  state. Check: the answer holds every write acknowledged more than BOUND seconds before,
  plus the network delays the rule does not count (docs/consistency.md: "the count
  ignores one network delay each way"). Those are measured, not guessed: every message
  carries, outside what PySyncObj and Bazar read, when it was sent; a leader's stamp
  carries the largest transit among the answers (append replies, or the votes that
  elected it) that its majority instant rests on; the allowance at time t is the largest
  (transit of a stamped message + that largest answer transit) among the stamped
  messages the replica received in [t - BOUND, t], and for a leader the largest transit
  among the answers it counted in that window. Sound: a correct rule's in-touch instant
  is the arrival of such a message minus its stamp's age, so it lies in the window, and
  no write the replica lacks was acknowledged before that instant minus those delays.
- *Applied state only*: at the end, with the group converged, every answer given must
  be a prefix of the final state (no read saw an entry that was not committed).

A *non-voting follower* (`add_follower`, the frontend's member of the catalog group:
`SyncObj(None, voters)`, no files) can join; it ticks once per round (after the
voters), is checked like any replica for local reads, stays on its leader's side of
every partition (the case where that leader may be deposed unknown to it), and at the
end must hold every acknowledged write. Adding it again restarts it empty, as a
frontend restarts.

Violations raise `harness.SafetyViolation` (through `World.fail`).
"""
from __future__ import annotations

import bisect
import contextlib
import math
import random
import time as real_time
from collections import deque

from pysyncobj import SyncObj
from pysyncobj.node import Node
from pysyncobj.transport import Transport

from bazar.cluster.config import CacheConfig, RaftConfig
from bazar.consensus import member as member_module
from bazar.consensus import probing as probing_module
from bazar.consensus import syncobj_private as private
from bazar.consensus.member import RaftMember, _PendingRead
from bazar.consensus.probing import MAJORITY_KEY, ProbeStamps
from bazar.consensus.reads import LeaderView
from bazar.consensus.settings import syncobj_conf
from tests.sim.harness import Recorder, SimNode, Simulation, SimTransport, UnknownLeader

BOUND = CacheConfig.max_follower_lag  # the documented bound on a local read's staleness
FOLLOWER = "f1"                       # the non-voting follower's name on the network
SENT_KEY = "sim_sent"                 # the simulation's own key: (sent at, answer transit)
EPSILON = 1e-6                        # float rounding of ages turned back into instants


class _SimTime:
    """The `time` module consensus.member and consensus.probing see in a simulation."""

    def __init__(self, clock) -> None:
        self.monotonic = clock

    def __getattr__(self, name):
        return getattr(real_time, name)


class _Timed(SimTransport):
    """The simulated transport, noting what the local-read check needs: each message's
    transit, the answers a leader counts (append replies that move its last-response
    time, the votes that elect it) and the stamped messages a replica receives."""

    def __init__(self, network, syncObj, selfNode, otherNodes) -> None:
        self.sync = syncObj
        self.counted: deque = deque()   # (arrival, transit) of answers this leader counted
        self.stamps: deque = deque()    # (arrival, allowance) of stamped append_entries received
        self.votes: dict[int, float] = {}   # term -> largest transit of a vote reply received
        self.followers: dict[str, Node] = {}  # non-voting followers connected to this voter
        super().__init__(network, syncObj, selfNode, otherNodes)

    def send(self, node, message) -> bool:
        if isinstance(message, dict) and message.get("type") in ("append_entries", "next_node_idx",
                                                                 "response_vote"):
            now = self.network.clock.now
            answered = 0.0
            age = message.get(MAJORITY_KEY)
            if age is not None:   # the stamp rests on the answers counted since now - age
                since = now - age - EPSILON
                answered = max((t for at, t in self.counted if at >= since), default=0.0)
            message = {**message, SENT_KEY: (now, answered)}
        return super().send(node, message)

    def receive(self, src: str, message: dict) -> None:
        if src not in self.nodes and src not in self.followers:
            return   # from a non-voting follower's closed connection: PySyncObj knows it per connection
        now = self.network.clock.now
        sent = message.pop(SENT_KEY, None)
        transit = 0.0 if sent is None else now - sent[0]
        kind = message.get("type")
        if kind == "response_vote":
            term = message.get("term", 0)
            self.votes[term] = max(self.votes.get(term, 0.0), transit)
        was_leader = private.role(self.sync) == private.LEADER
        before = dict(private.last_response_times(self.sync))
        if kind == "append_entries" and sent is not None and isinstance(message.get(MAJORITY_KEY), (int, float)):
            self._note(self.stamps, now, transit + sent[1])
        self.run(self._onMessageReceived, self._node(src), message)
        if self.network.transports.get(self.name) is not self:
            return   # it died in there
        if not was_leader and private.role(self.sync) == private.LEADER:
            # Every peer's last response is now its election: the votes' transits count.
            self._note(self.counted, now, self.votes.get(self.sync.raftCurrentTerm, 0.0))
        elif kind == "next_node_idx" and private.last_response_times(self.sync) != before:
            self._note(self.counted, now, transit)

    @staticmethod
    def _note(events: deque, at: float, value: float) -> None:
        events.append((at, value))
        while events and events[0][0] < at - 4 * BOUND - 10:
            events.popleft()

    def allowance(self, now: float) -> float:
        """The network delays a correct in-touch rule may leave uncounted at `now`."""
        since = now - BOUND - EPSILON
        return max([v for at, v in self.stamps if at >= since] + [v for at, v in self.counted if at >= since],
                   default=0.0)

    # A voter's end of a non-voting follower's connection (PySyncObj's TCP transport learns
    # of one from its first message, 'readonly').

    def knows(self, name: str) -> bool:
        return super().knows(name) or (name == FOLLOWER and FOLLOWER in self.network.transports)

    def peer_connected(self, name: str) -> None:
        if name in self.nodes:
            return super().peer_connected(name)
        self.followers[name] = SimNode(name)
        self.run(self._onReadonlyNodeConnected, self.followers[name])

    def peer_disconnected(self, name: str) -> None:
        if name in self.nodes:
            return super().peer_disconnected(name)
        if name in self.followers:
            self.run(self._onReadonlyNodeDisconnected, self.followers.pop(name))

    def _node(self, name: str):
        return self.nodes.get(name) or self.followers[name]


class VoterTransport(ProbeStamps, _Timed):
    """A voter's transport: Bazar's probing (real code) over the simulated network."""


class _FollowerEnd(_Timed):
    """The non-voting follower's end: no node of its own (PySyncObj's selfNode None)."""

    def __init__(self, network, syncObj, selfNode, otherNodes) -> None:
        self.sync = syncObj
        self.counted, self.stamps, self.votes, self.followers = deque(), deque(), {}, {}
        Transport.__init__(self, syncObj, selfNode, otherNodes)
        self.network = network
        self.name = FOLLOWER
        self.nodes = {node.id: node for node in otherNodes}
        self.learned: set[str] = set()
        network.attach(self)


class FollowerTransport(ProbeStamps, _FollowerEnd):
    """The non-voting follower's transport: Bazar's probing over the simulated network."""


class ReadRecorder(Recorder):
    """The simulation's state machine, telling the replica's member when a snapshot replaces
    its state (as `consensus.state.ReplicatedState` tells its listeners)."""

    def __init__(self, world, name: str) -> None:
        self.member: RaftMember | None = None   # not replicated: set before the base init
        super().__init__(world, name)

    def _deserialize(self, data) -> None:
        super()._deserialize(data)
        if self.member is not None:
            self.member.on_reset(self.applied[-1][0] if self.applied else 0)


class ReadSimulation(Simulation):
    """A Simulation whose replicas serve reads with Bazar's read side (see the module doc)."""

    transport_class = VoterTransport
    recorder_class = ReadRecorder

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.members: dict[str, RaftMember] = {}
        self.pending: dict[str, list] = {}          # replica -> [(PendingRead, acks before, started)]
        self.acks: list[tuple[float, int, str]] = []  # (time, index, command), in order
        self._ack_times: list[float] = []
        self._ack_max_index: list[int] = []         # largest index among acks[:i + 1]
        self.answers: list[tuple[str, str, float, list]] = []   # (replica, kind, time, applied)
        self.background: tuple[random.Random, float] | None = None
        self.follower = None                        # (SyncObj, ReadRecorder) of the non-voter
        self.stats = {"read index": 0, "refused": 0, "local": 0, "not in touch": 0, "checked": 0}
        acknowledged = self.world.on_acknowledged

        def on_acknowledged(command, index, entry, term):
            acknowledged(command, index, entry, term)
            self.acks.append((self.clock.now, index, command))
            self._ack_times.append(self.clock.now)
            self._ack_max_index.append(max(index, self._ack_max_index[-1] if self._ack_max_index else 0))

        self.world.on_acknowledged = on_acknowledged
        plain_partition = self.network.partition

        def partition(*groups):
            # The non-voting follower stays with the replica that leads as the partition begins.
            if FOLLOWER in self.network.transports:
                leader = self.leader()
                side = next((g for g in groups if leader in g), groups[0])
                groups = tuple(set(g) | {FOLLOWER} if g is side else g for g in groups)
            plain_partition(*groups)

        self.network.partition = partition

    def __enter__(self) -> "ReadSimulation":
        fake = _SimTime(self.clock)
        for module in (member_module, probing_module):
            self._saved.append((module, "time", module.time))
            module.time = fake
        return super().__enter__()

    def __exit__(self, *exc) -> None:
        try:
            self._stop_follower()
        finally:
            super().__exit__(*exc)

    # -- replicas

    def start(self, name: str, peers: list[str] | None = None) -> None:
        super().start(name, peers)
        self._attach(name, self.replicas[name].obj, self.replicas[name].recorder)
        self.pending[name] = []

    def _attach(self, name: str, obj: SyncObj, recorder: ReadRecorder) -> None:
        member = RaftMember.over(obj)
        recorder.member = member
        self.members[name] = member
        obj.addOnTickCallback(lambda: self._after_tick(name, member))   # after the member's own

    def add_follower(self) -> None:
        """Start the non-voting follower (again: empty, as a restarted frontend's)."""
        self._stop_follower()
        recorder = ReadRecorder(self.world, FOLLOWER)
        conf = syncobj_conf(RaftConfig(fsync=self.fsync, compaction_entries=self.compaction_entries,
                                       compaction_period=10 ** 9), None, password=None)
        conf.autoTick = False
        obj = SyncObj(None, list(self.names), conf=conf, consumers=[recorder], nodeClass=SimNode,
                      transportClass=lambda so, me, others: FollowerTransport(self.network, so, me, others))
        self.follower = (obj, recorder)
        self._attach(FOLLOWER, obj, recorder)
        self.pending[FOLLOWER] = []
        self.network.reconnect()

    def _stop_follower(self) -> None:
        if self.follower is None:
            return
        obj, _ = self.follower
        self.follower = None
        self.members.pop(FOLLOWER, None)
        self.network.detach(FOLLOWER)
        obj._doDestroy()

    def _recorder(self, name: str):
        if name == FOLLOWER:
            return self.follower[1] if self.follower else None
        replica = self.replicas.get(name)
        return replica.recorder if replica else None

    def _alive(self, name: str, member: RaftMember) -> bool:
        return self.members.get(name) is member and self._recorder(name) is not None

    # -- reads

    def read(self, name: str, count: int = 1) -> None:
        """Queue `count` read-index reads at `name`, as `RaftMember.read_index` does."""
        member = self.members.get(name)
        if member is None or self._recorder(name) is None:
            return
        for _ in range(count):
            pending = _PendingRead()
            with member._reads_lock:
                member._reads.add(pending)
            self.pending[name].append((pending, len(self.acks), self.clock.now, member))

    def local_read(self, name: str) -> None:
        """A local read at `name`: answered only while it counts itself in touch."""
        member = self.members.get(name)
        if member is None or self._recorder(name) is None:
            return
        if not member.in_touch(BOUND):
            self.stats["not in touch"] += 1
            return
        self.stats["local"] += 1
        applied = list(self._recorder(name).applied)
        self._check_local(name, applied, "local read")
        self.answers.append((name, "local read", self.clock.now, applied))

    def read_in_background(self, seed: int, percent: int) -> None:
        """From now on, before each tick a replica makes, with probability percent/100 a
        read-index read is queued there and a local read served there."""
        self.background = (random.Random(seed), percent / 100)

    def _after_tick(self, name: str, member: RaftMember) -> None:
        """Right after the member's own tick bookkeeping: answer the reads it finished."""
        waiting = self.pending.get(name, [])
        if not waiting or self.members.get(name) is not member:
            return
        still = []
        for pending, acks_before, started, owner in waiting:
            if owner is not member:
                continue      # queued at an earlier incarnation: gone with it
            if not pending.done.is_set():
                still.append((pending, acks_before, started, owner))
                continue
            if not isinstance(pending.outcome, int):
                self.stats["refused"] += 1
                continue
            self.stats["read index"] += 1
            applied = list(self._recorder(name).applied)
            for at, index, command in self._missing(applied, acks_before):
                self.world.fail(
                    f"read-index read at {name} (queued at t={started:.3f}, answered at "
                    f"t={self.clock.now:.3f} at read index {pending.outcome}) misses write "
                    f"{command!r} (index {index}), acknowledged at t={at:.3f} before the read began")
            self.answers.append((name, "read-index read", self.clock.now, applied))
        self.pending[name] = still

    def calm_step(self, rng: random.Random, load: float = 0.5) -> None:
        """A round of normal operation under load: a little time passes (5 to 50 ms), clients
        write at a replica (with probability `load`), every replica ticks, every message
        arrives. Elections end quickly in these, unlike in storms."""
        self.clock.advance(rng.choice((0.005, 0.01, 0.02, 0.05)))
        names = sorted(self.replicas)
        if names and rng.random() < load:
            self.write(rng.choice(names), rng.randint(1, 3))
        for name in names:
            if name in self.replicas:
                self.tick(name)
        self.deliver_all()
        self.observe()

    def tick(self, name: str) -> None:
        if self.background is not None and name in self.replicas:
            rng, rate = self.background
            if rng.random() < rate:
                self.read(name)
                self.local_read(name)
        super().tick(name)

    # -- checks

    def _required_until(self, threshold: float) -> int:
        """How many acknowledgments (a prefix of `acks`) happened before `threshold`."""
        return bisect.bisect_left(self._ack_times, threshold)

    def _check_local(self, name: str, applied: list | None, what: str) -> None:
        """A local read's answer at `name` now (its applied state) holds every write
        acknowledged more than BOUND + the uncounted network delays before now."""
        transport = self.network.transports.get(name)
        if transport is None:
            return
        allowance = transport.allowance(self.clock.now)
        threshold = self.clock.now - BOUND - allowance - EPSILON
        count = self._required_until(threshold)
        if count == 0:
            return
        self.stats["checked"] += 1
        obj = self.follower[0] if name == FOLLOWER else self.replicas[name].obj
        if applied is None and self._ack_max_index[count - 1] <= obj.raftLastApplied:
            return   # every such write's index is applied here (state machine safety is checked)
        applied = list(self._recorder(name).applied) if applied is None else applied
        for at, index, command in self._missing(applied, count):
            self.world.fail(
                f"{what} at {name} at t={self.clock.now:.3f} (in touch, bound {BOUND:g} s; "
                f"network delays allowed {allowance:.3f} s) misses write {command!r} (index {index}), "
                f"acknowledged at t={at:.3f}, {self.clock.now - at:.3f} s earlier")

    def _missing(self, applied: list, count: int) -> list[tuple[float, int, str]]:
        """The first `count` acknowledgments whose write `applied` does not hold."""
        held = {command for _, command in applied}
        return [ack for ack in self.acks[:count] if ack[2] not in held]

    def observe(self) -> None:
        if self.follower is not None:
            self.follower[0]._SyncObj__transport.run(self.follower[0]._onTick, 0)
        super().observe()
        for name, member in list(self.members.items()):
            if name != FOLLOWER and (name not in self.replicas or not self.replicas[name].ticked):
                continue
            if member.in_touch(BOUND):
                self._check_local(name, None, "a local read")

    def finish_reads(self) -> None:
        """At the end, the group converged: the non-voting follower catches up with it, and
        every answer given was a prefix of the committed state (the leader's)."""
        def final() -> list:
            return self.replicas[self.leader()].recorder.applied

        if self.follower is not None:
            recorder = self.follower[1]
            if not self.run_until(lambda: self.converged() and recorder.applied == final(), seconds=30):
                if self.behind_an_unknown_leader({FOLLOWER: self.network.transports.get(FOLLOWER)}):
                    raise UnknownLeader(f"the non-voting follower cannot reach leader {self.leader()}, "
                                        f"which its configuration does not name")
                self.world.fail(f"the non-voting follower did not catch up: it applied "
                                f"{len(recorder.applied)} commands, the leader {len(final())}")
        state = final()
        for name, kind, at, applied in self.answers:
            if state[:len(applied)] != applied:
                wrong = next(i for i, pair in enumerate(applied) if i >= len(state) or state[i] != pair)
                self.world.fail(f"{kind} at {name} at t={at:.3f} saw {applied[wrong]!r}, which is not "
                                f"the committed state's entry there")


# ------------------------------------------------------------------ mutations

@contextlib.contextmanager
def _patched(owner, name: str, replacement):
    original = owner.__dict__[name]
    setattr(owner, name, replacement)
    try:
        yield
    finally:
        setattr(owner, name, original)


def _age_zero(self):
    """A leader stamping age 0: its followers count from a message's arrival, as before the
    in-touch correction (from the last time they heard from their leader)."""
    return None if _original_majority_age(self) is None else 0.0


def _confirmed_at_once(self):
    """Step 3 of the read index left out: a read counts as confirmed without a heartbeat round."""
    return math.inf


_original_majority_age = RaftMember._majority_age

# Bazar's own read-side rules, each broken on purpose (python -m tests.sim.mutation --only NAME):
# the generated schedules must notice (tests/sim/test_reads.py).
MUTATIONS = {
    "in_touch_from_last_heard": lambda: _patched(RaftMember, "_majority_age", _age_zero),
    "read_index_without_step_3": lambda: _patched(LeaderView, "confirmed_round", _confirmed_at_once),
}
