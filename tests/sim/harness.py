"""A deterministic simulation of a PySyncObj Raft group: real SyncObj instances, fake time,
a network the test drives, and Raft's safety properties checked after every step.

Every replica is a real `pysyncobj.SyncObj` (with Bazar's corrections, since this
package imports `consensus`), configured by Bazar's own `consensus.settings.syncobj_conf`
and keeping its journal and snapshot in files, so a crash and restart reads them
back. What the simulation replaces is everything around it:

- Time: PySyncObj reads the clock through `pysyncobj.syncobj.monotonicTime` and
  draws election timeouts from `pysyncobj.syncobj.random`; inside `Simulation`
  both are the simulation's (`VirtualClock`, a seeded Random). Nobody ticks on
  their own (`autoTick` off): the test calls `tick`.
- The network: `SimTransport` is the transportClass each SyncObj gets; `send`
  puts the message (pickled, as on the wire) on a per-link queue, and nothing
  arrives until the test delivers it. Between two live replicas a link is a
  connection: FIFO, both ends told when it opens and closes (PySyncObj only
  sends to connected peers). The test can also deliver a later message before
  earlier ones, deliver a message twice, drop one, cut a connection (its Raft
  messages may still arrive later, out of order with the new connection's:
  "reorder across reconnects"), partition, crash a replica (its in-flight
  messages are lost, its files kept) and restart it.
  Chunked streams (a snapshot, or a big entry, sent in pieces) are the one thing
  kept in order and never duplicated: PySyncObj relies on TCP for those, and a
  lost piece cuts the connection, as TCP would.
- Observation: `World` records, after every step, each replica's leadership,
  commit index and log, every command applied (with its index) and every write
  acknowledged to its client, and `check` asserts Raft's safety properties
  (Figure 3 of the Raft paper) plus "no acknowledged write is lost".

Nothing here sleeps or reads the real clock: a schedule replays exactly.
"""
from __future__ import annotations

import contextlib
import hashlib
import pickle
import random
import shutil
import tempfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from bazar import consensus  # noqa: F401  installs Bazar's corrections to PySyncObj
import pysyncobj.syncobj as syncobj_module
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConsumer, replicated
from pysyncobj.node import Node
from pysyncobj.transport import Transport

from bazar.cluster.config import RaftConfig
from bazar.consensus import patching, raft_fixes
from bazar.consensus.settings import syncobj_conf


class SafetyViolation(AssertionError):
    """One of Raft's safety properties does not hold."""


# ------------------------------------------------------------------------ time

class VirtualClock:
    """The time PySyncObj sees: it moves only when the test advances it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# ----------------------------------------------------------------- the network

def _is_stream(message: dict) -> bool:
    """A piece of a chunked stream (snapshot or big entry): order and uniqueness matter."""
    return 'serialized' in message or 'transmission' in message


@dataclass
class _InFlight:
    src: str
    dst: str
    src_life: int          # incarnations of both ends when sent: a message to or from a
    dst_life: int          # process that has since crashed is never delivered
    data: bytes            # the pickled message, as TCP carries it

    def message(self) -> dict:
        return pickle.loads(self.data)


class SimNetwork:
    """Links between replicas, under the test's control (see the module docstring)."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.transports: dict[str, SimTransport] = {}   # live replicas
        self.life: dict[str, int] = {}                   # incarnation of each replica
        self.queues: dict[tuple[str, str], deque[_InFlight]] = {}
        self.stragglers: list[_InFlight] = []            # deliverable in any order
        self.cut: set[frozenset[str]] = set()            # pairs kept apart (partition)
        self.connected: set[frozenset[str]] = set()
        self.delivered = 0

    # -- membership of live processes

    def attach(self, transport: "SimTransport") -> None:
        name = transport.name
        self.transports[name] = transport
        self.life[name] = self.life.get(name, 0) + 1

    def detach(self, name: str) -> None:
        """The process died: its connections close and what was in flight to or from it is lost."""
        self.transports.pop(name, None)
        for pair in [p for p in self.connected if name in p]:
            self._close(pair, keep=False)
        self.stragglers = [m for m in self.stragglers if name not in (m.src, m.dst)]

    # -- connections

    def reconnect(self) -> None:
        """Open a connection between every two live replicas that are not kept apart."""
        names = sorted(self.transports)
        for a in names:
            for b in names:
                pair = frozenset((a, b))
                if a < b and pair not in self.connected and pair not in self.cut \
                        and self.transports[a].knows(b) and self.transports[b].knows(a):
                    self.connected.add(pair)
                    self.transports[a].peer_connected(b)
                    self.transports[b].peer_connected(a)

    def reset(self, a: str, b: str) -> None:
        """Cut the connection between a and b; its Raft messages may still arrive later."""
        pair = frozenset((a, b))
        if pair in self.connected:
            self._close(pair, keep=True)

    def partition(self, *groups: set[str]) -> None:
        """Keep replicas in different groups apart until `heal`."""
        self.cut = {frozenset((a, b)) for g in groups for h in groups if g is not h
                    for a in g for b in h}
        for pair in list(self.connected & self.cut):
            a, b = sorted(pair)
            self._close(pair, keep=True)

    def heal(self) -> None:
        self.cut = set()
        self.reconnect()

    def _close(self, pair: frozenset[str], keep: bool) -> None:
        self.connected.discard(pair)
        a, b = sorted(pair)
        for link in ((a, b), (b, a)):
            queue = self.queues.pop(link, deque())
            if keep:
                self.stragglers.extend(m for m in queue if not _is_stream(m.message()))
        for x, y in ((a, b), (b, a)):
            if x in self.transports:
                self.transports[x].peer_disconnected(y)

    # -- messages

    def send(self, src: str, dst: str, message: dict) -> bool:
        if frozenset((src, dst)) not in self.connected:
            return False
        self.queues.setdefault((src, dst), deque()).append(
            _InFlight(src, dst, self.life[src], self.life[dst], pickle.dumps(message)))
        return True

    def inject(self, src: str, dst: str, message: dict) -> None:
        """Queue a message the test wrote, as if `src` had sent it (src and dst connected)."""
        assert self.send(src, dst, message), f"{src} and {dst} are not connected"

    def links(self) -> list[tuple[str, str]]:
        """Links with messages waiting, in a stable order."""
        return sorted(link for link, queue in self.queues.items() if queue)

    def in_flight(self) -> int:
        return sum(len(q) for q in self.queues.values()) + len(self.stragglers)

    def deliver(self, link: tuple[str, str], position: int = 0, duplicate: bool = False) -> bool:
        """Deliver a message waiting on `link`: the oldest (position 0, FIFO) or a later one
        (a Raft message overtaking others). `duplicate` leaves a copy behind as a straggler."""
        queue = self.queues.get(link)
        if not queue:
            return False
        position = min(position, len(queue) - 1)
        if position and _is_stream(queue[position].message()):
            position = 0
        item = queue[position]
        del queue[position]
        if duplicate and not _is_stream(item.message()):
            self.stragglers.append(item)
        return self._hand_over(item)

    def deliver_all_on(self, link: tuple[str, str]) -> int:
        """Deliver, oldest first, every message waiting on `link`; return how many."""
        count = 0
        while self.deliver(link):
            count += 1
        return count

    def drop(self, link: tuple[str, str]) -> None:
        """Lose the oldest message on `link`; losing a piece of a stream cuts the connection."""
        queue = self.queues.get(link)
        if not queue:
            return
        if _is_stream(queue[0].message()):
            self.reset(*link)
        else:
            queue.popleft()

    def deliver_straggler(self, position: int) -> bool:
        if not self.stragglers:
            return False
        item = self.stragglers.pop(position % len(self.stragglers))
        return self._hand_over(item)

    def _hand_over(self, item: _InFlight) -> bool:
        receiver = self.transports.get(item.dst)
        if receiver is None or self.life.get(item.src) != item.src_life \
                or self.life.get(item.dst) != item.dst_life:
            return False
        self.delivered += 1
        receiver.receive(item.src, item.message())
        return True


class SimTransport(Transport):
    """PySyncObj's transport interface over a SimNetwork (give SyncObj a partial of it)."""

    def __init__(self, network: SimNetwork, syncObj, selfNode, otherNodes) -> None:
        super().__init__(syncObj, selfNode, otherNodes)
        self.network = network
        self.name = selfNode.id
        self.nodes = {node.id: node for node in otherNodes}
        network.attach(self)

    def send(self, node, message) -> bool:
        if 'serialized' in message:
            # A leader whose snapshot file is busy sends empty pieces in a loop that only
            # the clock ends (after appendEntriesPeriod); in virtual time each piece costs 1 ms.
            self.network.clock.advance(0.001)
        return self.network.send(self.name, node.id, message)

    def knows(self, name: str) -> bool:
        """Whether this replica's configuration names `name` (PySyncObj connects only to
        nodes it knows, and refuses a connection from one it does not)."""
        return name in self.nodes

    def addNode(self, node) -> None:
        """A membership change added `node`: connect to it, as TCPTransport does."""
        self.nodes[node.id] = node
        self.network.reconnect()

    def dropNode(self, node) -> None:
        """A membership change removed `node`: close the connection to it."""
        self.network.reset(self.name, node.id)
        self.nodes.pop(node.id, None)

    def receive(self, src: str, message: dict) -> None:
        self._onMessageReceived(self.nodes[src], message)

    def peer_connected(self, name: str) -> None:
        self._onNodeConnected(self.nodes[name])

    def peer_disconnected(self, name: str) -> None:
        self._onNodeDisconnected(self.nodes[name])


# ------------------------------------------------------------ the state machine

class Recorder(SyncObjConsumer):
    """The replicated state: the list of (log index, command) applied, in order."""

    def __init__(self, world: "World", name: str) -> None:
        self.world, self.name = world, name       # not replicated (set before the base init)
        super().__init__()
        self.applied: list[tuple[int, str]] = []  # replicated, and part of every snapshot

    @replicated
    def put(self, command: str, payload: bytes = b"") -> int:
        index = self._syncObj.raftLastApplied + 1  # PySyncObj counts it just after this returns
        self.applied.append((index, command))
        self.world.on_applied(self.name, index, command)
        return index

    def digest(self) -> str:
        return hashlib.sha256(repr(self.applied).encode()).hexdigest()


# -------------------------------------------------------------- the checker

@dataclass
class World:
    """Everything observed in one simulation, and Raft's safety properties over it."""

    leaders: dict[int, str] = field(default_factory=dict)                    # term -> leader
    committed: dict[int, tuple[int, bytes, int]] = field(default_factory=dict)  # index -> (term, command, seen in term)
    applied_at: dict[int, str] = field(default_factory=dict)                 # index -> command applied there
    acknowledged: dict[str, int] = field(default_factory=dict)               # command -> index
    violations: list[str] = field(default_factory=list)

    def fail(self, text: str) -> None:
        self.violations.append(text)
        raise SafetyViolation(text)

    def on_applied(self, name: str, index: int, command: str) -> None:
        """State machine safety: no two replicas apply different commands at one index."""
        seen = self.applied_at.setdefault(index, command)
        if seen != command:
            self.fail(f"{name} applied {command!r} at index {index}, another replica {seen!r}")

    def on_acknowledged(self, command: str, index: int, entry: tuple, term: int) -> None:
        """A client was told `command` is committed at `index`: so it is, from now on."""
        self.acknowledged[command] = index
        raw, entry_index, entry_term = entry
        seen = self.committed.setdefault(index, (entry_term, raw, term))
        if entry_index != index or seen[:2] != (entry_term, raw):
            self.fail(f"acknowledged write {command!r} at {index} is not the committed entry there")

    def observe(self, sim: "Simulation") -> None:
        """Record and check, for every live replica, after a step."""
        for name, replica in sim.replicas.items():
            if not replica.ticked:
                continue  # just (re)started: its state counts once it has run
            obj = replica.obj
            log = entries(obj)
            if not log:
                self.fail(f"{name}'s Raft log is empty")
            term = obj.raftCurrentTerm
            if obj._isLeader():
                # Election safety: at most one leader per term.
                other = self.leaders.setdefault(term, name)
                if other != name:
                    self.fail(f"two leaders in term {term}: {other} and {name}")
            # Committed entries: what a replica's commit index covers is committed forever.
            first, last = log[0][1], log[-1][1]
            if obj.raftCommitIndex > last:
                self.fail(f"{name}'s commit index {obj.raftCommitIndex} is beyond its log's end {last}")
            for index in range(max(first, replica.checked_commit + 1), min(obj.raftCommitIndex, last) + 1):
                command, _, entry_term = log[index - first]
                seen = self.committed.setdefault(index, (entry_term, command, term))
                if seen[:2] != (entry_term, command):
                    self.fail(f"index {index} committed twice with different entries "
                              f"(term {seen[0]} and term {entry_term}, seen by {name})")
            replica.checked_commit = max(replica.checked_commit, obj.raftCommitIndex)
        self.check_logs(sim)

    def check_logs(self, sim: "Simulation") -> None:
        logs = {name: entries(replica.obj) for name, replica in sim.replicas.items()}
        names = sorted(logs)
        # Log matching: two logs with an entry of the same index and term agree up to it.
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                check_log_matching(self, a, logs[a], b, logs[b])
        # Leader completeness: a leader elected after an entry was committed has it.
        for name in names:
            obj = sim.replicas[name].obj
            if not obj._isLeader():
                continue
            log, term = logs[name], obj.raftCurrentTerm
            first, last = log[0][1], log[-1][1]
            for index, (entry_term, command, seen_in) in self.committed.items():
                if seen_in >= term:
                    continue
                if index > last:
                    self.fail(f"leader {name} (term {term}) lacks committed entry {index}")
                    break
                if index >= first and log[index - first][2] != entry_term:
                    self.fail(f"leader {name} (term {term}) has a different entry at committed "
                              f"index {index}")
                    break
        # An acknowledged write is a committed entry (recorded when acknowledged), so the
        # checks above keep it: no later leader lacks it, no replica commits another there.


def entries(obj: SyncObj) -> list:
    """A replica's Raft log, as (command, index, term) tuples (the harness may look inside)."""
    journal = obj._SyncObj__raftLog
    return [journal[i] for i in range(len(journal))]


def check_log_matching(world: World, a: str, log_a: list, b: str, log_b: list) -> None:
    """Raft's Log Matching property over the part of both logs that is still kept."""
    start = max(log_a[0][1], log_b[0][1])
    end = min(log_a[-1][1], log_b[-1][1])
    same_from = None
    for index in range(end, start - 1, -1):
        ea, eb = log_a[index - log_a[0][1]], log_b[index - log_b[0][1]]
        if same_from is None:
            if ea[2] == eb[2]:
                same_from = index
            continue
        if ea != eb:
            world.fail(f"logs of {a} and {b} agree at index {same_from} (term {ea[2]}) but "
                       f"differ at {index}")


# ------------------------------------------------------------- the simulation

@dataclass
class Replica:
    name: str
    directory: Path
    obj: SyncObj
    recorder: Recorder
    checked_commit: int = 0
    ticked: bool = False


class Simulation:
    """A group of real SyncObj replicas on a SimNetwork, under a VirtualClock.

    Use as a context manager: it swaps PySyncObj's clock and randomness for the
    simulation's while open, and removes every file when closed.
    """

    def __init__(self, size: int = 3, seed: int = 0, compaction_entries: int = 1_000_000,
                 payload: int = 0, journal=None, fsync: bool = False) -> None:
        self.names = [f"n{i + 1}" for i in range(size)]
        self.clock = VirtualClock()
        self.random = random.Random(seed)
        self.network = SimNetwork(self.clock)
        self.world = World()
        self.compaction_entries = compaction_entries
        self.payload = b"x" * payload
        self.replicas: dict[str, Replica] = {}
        self.initial: dict[str, list[str]] = {}  # the peers each replica was first started with
        self.crashed: set[str] = set()
        self.commands = 0
        self.root = Path(tempfile.mkdtemp(prefix="bazar-sim-", dir=_fast_tmp()))
        self._journal = journal        # another createJournal for PySyncObj (None: Bazar's)
        self.uses_bazar_journal = journal is None
        self.fsync = fsync             # raft.fsync (on a RAM disk when there is one: cheap)
        self._saved: list = []

    def __enter__(self) -> "Simulation":
        # The simulation's clock and randomness, and no wake-up pipe (nobody sleeps on it).
        swaps = [("monotonicTime", self.clock), ("random", self.random),
                 ("PIPE_NOTIFIER_ENABLED", False)]
        if self._journal is not None:
            swaps.append(("createJournal", self._journal))
        for name, value in swaps:
            self._saved.append((name, getattr(syncobj_module, name)))
            setattr(syncobj_module, name, value)
        for name in self.names:
            self.start(name)
        self.network.reconnect()
        return self

    def __exit__(self, *exc) -> None:
        try:
            for name in list(self.replicas):
                self.crash(name)
        finally:
            for name, value in reversed(self._saved):
                setattr(syncobj_module, name, value)
            shutil.rmtree(self.root, ignore_errors=True)

    # -- processes

    def conf(self, name: str):
        conf = syncobj_conf(RaftConfig(fsync=self.fsync, compaction_entries=self.compaction_entries,
                                       compaction_period=10 ** 9),
                            self.root / name, password=None, group_size=len(self.names))
        conf.autoTick = False          # the simulation ticks
        conf.useFork = False           # snapshots written in-line, deterministically
        conf.logCompactionSplit = False
        return conf

    def start(self, name: str, peers: list[str] | None = None) -> None:
        """Start (or restart) replica `name` knowing `peers` (by default the group it was
        started with, as a process reads cluster.yaml: later changes come from its log)."""
        recorder = Recorder(self.world, name)
        peers = self.initial.get(name, self.names) if peers is None else peers
        self.initial.setdefault(name, list(peers))
        obj = SyncObj(name, [n for n in peers if n != name], conf=self.conf(name),
                      consumers=[recorder], nodeClass=Node,
                      transportClass=lambda so, me, others: SimTransport(self.network, so, me, others))
        self.replicas[name] = Replica(name, self.root / name, obj, recorder)
        self.crashed.discard(name)

    def crash(self, name: str) -> None:
        """The process dies: in-flight messages are lost, files stay as written."""
        replica = self.replicas.pop(name)
        self.network.detach(name)
        replica.obj._doDestroy()
        self.crashed.add(name)

    def kill(self, name: str) -> None:
        """The process is killed (SIGKILL): unlike `crash`, nothing more reaches its files.
        What its journal had written stays; what it had not (entries not yet written, and
        its state: term, vote and commit index, which it saves at most once a second
        unless a vote forces it) is lost. Needs Bazar's journal."""
        journal = self.replicas[name].obj._SyncObj__raftLog
        journal._pending.clear()
        journal._state_dirty = False
        self.crash(name)

    def restart(self, name: str) -> None:
        self.start(name)
        self.network.reconnect()

    def add_replica(self, name: str, peers: list[str]) -> None:
        """Start a new replica `name` knowing `peers`; it takes part once a membership
        change adds it (`SyncObj.addNodeToCluster`) to the others' configuration."""
        self.names.append(name)
        self.start(name, peers)
        self.network.reconnect()

    # -- driving

    def tick(self, name: str) -> None:
        replica = self.replicas[name]
        replica.obj._onTick(0)
        replica.ticked = True

    def tick_all(self) -> None:
        for name in sorted(self.replicas):
            self.tick(name)

    def write(self, name: str, count: int = 1) -> list[str]:
        """Submit `count` commands at replica `name`; an acknowledgment is recorded in World."""
        submitted = []
        replica = self.replicas[name]
        for _ in range(count):
            self.commands += 1
            command = f"c{self.commands}"
            submitted.append(command)

            def done(result, error, command=command, replica=replica):
                if error == FAIL_REASON.SUCCESS:  # `result` is the index put() ran at
                    first = replica.obj._SyncObj__raftLog[0][1]
                    entry = replica.obj._SyncObj__raftLog[result - first]
                    self.world.on_acknowledged(command, result, entry, replica.obj.raftCurrentTerm)

            replica.recorder.put(command, self.payload, callback=done)
        return submitted

    def deliver_all(self, limit: int = 100_000) -> int:
        """Deliver every waiting message (FIFO per link), including what the deliveries cause."""
        count = 0
        while count < limit:
            links = self.network.links()
            if not links:
                break
            for link in links:
                self.network.deliver(link)
                count += 1
        return count

    def step(self, seconds: float = 0.01) -> None:
        """One round of normal operation: time passes, every replica ticks, messages arrive."""
        self.clock.advance(seconds)
        self.tick_all()
        self.deliver_all()
        self.observe()

    def chaotic_step(self, rng: random.Random, load: float = 0.5) -> None:
        """One round of adversarial operation, every choice drawn from `rng`: some time passes,
        clients write at a replica (with probability `load`), replicas tick in any order (some
        not at all), and some messages arrive, in order, overtaking others, twice, late (from
        cut connections) or never."""
        self.clock.advance(rng.choice((0.001, 0.01, 0.03, 0.06, 0.15, 0.3)))
        names = sorted(self.replicas)
        if rng.random() < load:
            self.write(rng.choice(names), rng.randint(1, 6))
        rng.shuffle(names)
        for name in names:
            if rng.random() < 0.9:
                self.tick(name)
        network = self.network
        for _ in range(rng.randint(0, 2 * network.in_flight() + 2)):
            links = network.links()
            choice = rng.random()
            if network.stragglers and (choice < 0.08 or not links):
                network.deliver_straggler(rng.randrange(len(network.stragglers)))
            elif not links:
                break
            elif choice < 0.16:
                network.deliver(rng.choice(links), position=rng.randint(1, 8))   # overtakes
            elif choice < 0.20:
                network.deliver(rng.choice(links), duplicate=True)
            elif choice < 0.23:
                network.drop(rng.choice(links))
            else:
                network.deliver(rng.choice(links))
        self.observe()

    def observe(self) -> None:
        self.world.observe(self)

    def leader(self) -> str | None:
        leaders = [n for n, r in self.replicas.items() if r.obj._isLeader()]
        return max(leaders, key=lambda n: self.replicas[n].obj.raftCurrentTerm) if leaders else None

    def run_until(self, condition, seconds: float = 30.0, step: float = 0.01) -> bool:
        """Step until `condition()` holds (True) or `seconds` of virtual time have passed."""
        deadline = self.clock.now + seconds
        while self.clock.now < deadline:
            self.step(step)  # at least one: a write waits in a queue until the next tick
            if condition():
                return True
        return False

    def converged(self) -> bool:
        """Every replica alive, one leader, and all have applied the same, final state."""
        leader = self.leader()
        if leader is None or self.crashed:
            return False
        commit = self.replicas[leader].obj.raftCommitIndex
        if entries(self.replicas[leader].obj)[-1][1] != commit:
            return False
        return all(r.obj.raftLastApplied == commit and r.obj.raftCommitIndex == commit
                   for r in self.replicas.values()) and \
            len({r.recorder.digest() for r in self.replicas.values()}) == 1

    def heal_everything(self) -> None:
        for name in sorted(self.crashed):
            self.start(name)
        self.network.heal()
        self.network.stragglers.clear()

    def lost_acknowledged(self, name: str) -> list[str]:
        """Acknowledged commands that replica `name`'s applied state does not hold."""
        held = {command for _, command in self.replicas[name].recorder.applied}
        return sorted(c for c in self.world.acknowledged if c not in held)


def _fast_tmp() -> str | None:
    """Simulated replicas write many small files: a RAM disk when there is one."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() else None


@contextlib.contextmanager
def original_follower():
    """Run PySyncObj 0.3.17's own follower code, to show what Bazar's corrections fix.

    Replicas built inside the block get the original methods (PySyncObj binds its
    message handler when a SyncObj is built); the corrections return on exit."""
    # With PySyncObj's own command loop too (one round per command, no group commit:
    # consensus/group_commit.py): the recorded schedules were found with it.
    fixed = {name: SyncObj.__dict__[name] for name in raft_fixes.REPLACED + ("_checkCommandsToApply",)}
    try:
        for name in fixed:
            setattr(SyncObj, name, patching.original(SyncObj, name))
        yield
    finally:
        for name, function in fixed.items():
            setattr(SyncObj, name, function)
