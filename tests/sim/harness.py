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

The fault model, in full
------------------------
- Messages: delayed, reordered (a later one overtaking earlier ones on a link),
  duplicated, lost; *held back* for as long as the schedule likes (`SimNetwork.hold`:
  across elections, partitions and reconnects, then `release`d in any order), which
  is how an old term's append acknowledgment (it carries no term in PySyncObj
  0.3.17) or vote reaches a later term. Messages to or from a process incarnation
  that has since died are never delivered (its TCP connections died with it).
- Processes: a *graceful* crash (`crash`: PySyncObj's `_doDestroy`, which syncs the
  journal and saves the Raft state, as a SIGTERM does), a *kill* (`kill`: SIGKILL:
  appended entries not yet written are lost, files stay as the kernel has them),
  and a *power cut* (`kill(..., power=True)`): every file of the replica goes back
  to what was durable (`consensus.storage.record_durable`, which the simulation
  hooks to remember each file's durable content), optionally with a *torn* tail:
  a random part of the undurable bytes kept, possibly garbage. Replicas run with
  fsync on (their files are on /dev/shm, where fsync is cheap). A replica can also be
  *doomed* (`SimNetwork.doom`) to die by SIGKILL or power cut right after its n-th next
  send, in the middle of handling a message or a tick (an acknowledgment sent, the
  fsync that was to follow not done); what it sent is still delivered.
- The snapshot writer (`fork_writer=True`, PySyncObj's `useFork` as Bazar runs it):
  `os.fork` inside the serializer is the simulation's, which records a
  `SnapshotWriter` actor holding the data as it was at the fork; the writer's
  work (Bazar's: `snapshot.write_snapshot`; PySyncObj's own: a `.tmp` file and a
  rename) runs when the schedule says (`finish_writer`), and `waitpid` tells the
  replica so on its next tick. Before a snapshot received from the leader is renamed
  into place, Bazar's `stop_own_writer` kills the writer (`kill`) and waits for it: it
  never renames afterwards (PySyncObj's own code, without that, lets it rename its
  older snapshot over the received one). A writer survives its replica's kill or crash as a straggler
  that holds the data directory's lock (it inherited the descriptor,
  `consensus.journal._lock`): a restart first waits for it to end, which it does
  either by finishing its rename or by dying (PR_SET_PDEATHSIG) before it; the
  schedule says which. A power cut kills it with everything.
- Disks: `corrupt` flips one bit of a durable journal record of a crashed replica,
  one the journal can tell from a torn write (`corrupt_journal` says which and why).
  A replica may then refuse to start (`JournalCorrupt`): it stays down
  (`Simulation.refused`) and that is not a violation; at the end the operator's
  recovery runs (`recover`: BAZAR_REPAIR_JOURNAL=1, it keeps its term, vote and the
  sound entries before the damage and copies the rest from its peers). Losing an acknowledged write, or any safety property, is one.
- Membership (tests/sim/membership_steps.py): one change at a time through the leader,
  after Bazar's own checks (`MembershipChanges._check_change`): a fresh empty replica
  added, a follower (running or crashed) removed and its process stopped once the change
  committed (or left running), a replacement (remove, then add). A replica that drops a
  node closes its connection to it; a message from a node the receiver no longer knows
  is not delivered. The checks follow the configurations: `World.check_configurations`
  (Raft §6: every replica counts the latest configuration its log names), and the end's
  convergence and "no acknowledged write lost" are over the final leader's members.

What is NOT modelled: PySyncObj's TCP transport and its framing (Bazar's
`frame_guard` and `transport` corrections are never exercised here), encryption,
a full disk or failing fsync (`fatal_io_error`), renames that are not atomic, a
file system losing a rename whose directory was fsynced, damage to a journal's last
record past its saved commit index (indistinguishable from a torn write: see
`corrupt_journal`), several processes
sharing a data directory, clocks that run at different speeds, a crash inside
`rebase_log` between its `clear()` and its `add()`s (replicas die only at a send or
between steps), Bazar's member directory (the addresses a change records first),
PySyncObj's admin commands on the Raft port, and removing the leader itself (Bazar hands
leadership over first). Reads (read index, local reads with the in-touch bound, the
non-voting follower) are tests/sim/reads.py's `ReadSimulation`, which generated
schedules use.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import sys
import random
import shutil
import tempfile
import zlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from bazar import consensus  # noqa: F401  installs Bazar's corrections to PySyncObj
import pysyncobj.syncobj as syncobj_module
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConsumer, replicated
from pysyncobj.node import Node
from pysyncobj.serializer import Serializer
from pysyncobj.transport import Transport
import pysyncobj.serializer as serializer_module
from pysyncobj.atomic_replace import atomicReplace

from bazar.cluster.config import RaftConfig
from bazar.consensus import journal as journal_module
from bazar.consensus import journal_repair, patching, raft_fixes, snapshot, storage
from bazar.consensus.settings import syncobj_conf


class SafetyViolation(AssertionError):
    """One of Raft's safety properties does not hold."""


class UnknownLeader(AssertionError):
    """The healed group did not converge because members do not know its leader.

    PySyncObj connects only to nodes in a replica's configuration and refuses the others,
    so a replica (or a frontend's follower) that missed the changes adding the current
    leader was never reached by it. This was a known limitation, reported apart from
    failures (about 1 schedule in 100), until replicas that hear no leader asked their
    peers for it (consensus/raft_fixes.py, item 8); now it is a failure like any other,
    told apart only by its message."""


class ProcessKilled(BaseException):
    """Raised inside a doomed replica's code right after a send (`SimNetwork.doom`): the
    process dies there, in the middle of handling a message or a tick. A BaseException, so
    that no `except Exception` in PySyncObj catches it."""

    def __init__(self, name: str, power: bool) -> None:
        super().__init__(name)
        self.name, self.power = name, power


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
        self.held: list[_InFlight] = []                  # held back until `release`
        self.doomed: dict[str, list] = {}                # replica -> [sends left, power cut]
        self.on_killed = None                            # the Simulation's kill, for doomed ones
        self.cut: set[frozenset[str]] = set()            # pairs kept apart (partition)
        self.connected: set[frozenset[str]] = set()
        self.delivered = 0
        self.smallest_group: int | None = None           # fewest voters any replica counted

    # -- membership of live processes

    def attach(self, transport: "SimTransport") -> None:
        name = transport.name
        self.transports[name] = transport
        self.life[name] = self.life.get(name, 0) + 1

    def detach(self, name: str, keep_sent: bool = False) -> None:
        """The process died: its connections close and what was in flight to or from it is lost,
        except, with `keep_sent`, what it had already sent (in its socket's buffers: the peer
        reads it before it sees the connection close)."""
        self.transports.pop(name, None)
        self.doomed.pop(name, None)
        for pair in sorted((p for p in self.connected if name in p), key=sorted):
            if keep_sent:
                other = next(iter(pair - {name}))
                self.stragglers.extend(m for m in self.queues.get((name, other), ())
                                       if not _is_stream(m.message()))
            self._close(pair, keep=False)
        kept = lambda m: m.dst != name and (keep_sent or m.src != name)  # noqa: E731
        self.stragglers = [m for m in self.stragglers if kept(m)]
        self.held = [m for m in self.held if kept(m)]

    def doom(self, name: str, sends: int, power: bool = False) -> None:
        """Replica `name` dies right after its `sends`-th next message has gone out (in the
        middle of whatever it is doing), by SIGKILL or a power cut."""
        self.doomed[name] = [sends, power]

    # -- connections

    def reconnect(self) -> None:
        """Open a connection between every two live replicas that are not kept apart."""
        names = sorted(self.transports)
        for a in names:
            for b in names:
                pair = frozenset((a, b))
                if a not in self.transports or b not in self.transports:
                    continue   # died in there (a doomed replica's send on connecting)
                if a < b and pair not in self.connected and pair not in self.cut \
                        and self.transports[a].knows(b) and self.transports[b].knows(a):
                    self.connected.add(pair)
                    self.transports[a].peer_connected(b)
                    if pair in self.connected and b in self.transports:   # a may have died in there
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
        for pair in sorted(self.connected & self.cut, key=sorted):
            a, b = sorted(pair)
            self._close(pair, keep=True)

    def cut_link(self, a: str, b: str) -> None:
        """Keep a and b apart, and nobody else, until `heal` (a partial partition: each may
        still reach every other replica)."""
        pair = frozenset((a, b))
        self.cut.add(pair)
        if pair in self.connected:
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
        return sum(len(q) for q in self.queues.values()) + len(self.stragglers) + len(self.held)

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

    def hold(self, link: tuple[str, str], position: int = 0) -> bool:
        """Take a message off `link` and keep it back until `release`: it arrives (if both
        ends still run the same incarnation) whenever the schedule says, after elections,
        partitions and reconnects. Stream pieces are never held (TCP keeps them in order)."""
        queue = self.queues.get(link)
        if not queue:
            return False
        position = min(position, len(queue) - 1)
        if _is_stream(queue[position].message()):
            return False
        self.held.append(queue[position])
        del queue[position]
        return True

    def hold_kind(self, kinds: tuple[str, ...], rng: random.Random, share: float) -> int:
        """Hold back about `share` of the waiting messages whose type is in `kinds`
        (every type if empty); return how many were held."""
        count = 0
        for link in self.links():
            queue = self.queues[link]
            keep = deque()
            for item in queue:
                message = item.message()
                if not _is_stream(message) and (not kinds or message.get('type') in kinds) \
                        and rng.random() < share:
                    self.held.append(item)
                    count += 1
                else:
                    keep.append(item)
            self.queues[link] = keep
        return count

    def release(self, position: int) -> bool:
        """Deliver one held message (any of them: `position` modulo how many there are)."""
        if not self.held:
            return False
        return self._hand_over(self.held.pop(position % len(self.held)))

    def deliver_straggler(self, position: int) -> bool:
        if not self.stragglers:
            return False
        item = self.stragglers.pop(position % len(self.stragglers))
        return self._hand_over(item)

    def _hand_over(self, item: _InFlight) -> bool:
        receiver = self.transports.get(item.dst)
        if receiver is None or self.life.get(item.src) != item.src_life \
                or self.life.get(item.dst) != item.dst_life or not receiver.knows(item.src):
            return False   # (a membership change dropped the sender: its connection closed)
        self.delivered += 1
        receiver.receive(item.src, item.message())
        return True


class SimNode(Node):
    """PySyncObj's Node, hashed by a digest of its name instead of Python's per-process salted
    string hash: PySyncObj iterates sets of nodes (whom to send to first), and with the salted
    hash a schedule took another course under another PYTHONHASHSEED."""

    def __hash__(self):
        return zlib.crc32(self.id.encode())


class SimTransport(Transport):
    """PySyncObj's transport interface over a SimNetwork (give SyncObj a partial of it)."""

    _running = False   # inside a call into the replica (`run`)

    def __init__(self, network: SimNetwork, syncObj, selfNode, otherNodes) -> None:
        super().__init__(syncObj, selfNode, otherNodes)
        self.network = network
        self.name = selfNode.id
        self.nodes = {node.id: node for node in otherNodes}
        self.learned: set[str] = set()   # peers known without being voters (`learn_peer`)
        network.attach(self)

    def send(self, node, message) -> bool:
        if 'serialized' in message:
            # A leader whose snapshot file is busy sends empty pieces in a loop that only
            # the clock ends (after appendEntriesPeriod); in virtual time each piece costs 1 ms.
            self.network.clock.advance(0.001)
        sent = self.network.send(self.name, node.id, message)
        doom = self.network.doomed.get(self.name)
        if doom is not None:
            doom[0] -= 1
            if doom[0] <= 0:
                del self.network.doomed[self.name]
                raise ProcessKilled(self.name, doom[1])
        return sent

    def knows(self, name: str) -> bool:
        """Whether this replica's configuration names `name` (PySyncObj connects only to
        nodes it knows, and refuses a connection from one it does not)."""
        return name in self.nodes

    def addNode(self, node) -> None:
        """A membership change added `node`: connect to it, as TCPTransport does."""
        self.learned.discard(node.id)
        self.nodes[node.id] = node
        self.network.reconnect()

    def learn_peer(self, name: str) -> bool:
        """Know `name` as a peer without counting it (consensus/transport.py's `learn_peer`:
        a leader this replica's configuration does not name): connect to it."""
        if name in self.nodes or name == self.name:
            return False
        self.learned.add(name)
        self.nodes[name] = SimNode(name)
        self.network.reconnect()
        return True

    def dropNode(self, node) -> None:
        """A membership change removed `node`: close the connection to it."""
        self.network.reset(self.name, node.id)
        self.nodes.pop(node.id, None)
        self.learned.discard(node.id)
        # Every configuration a replica can hold, now or after a restart from its disk, it
        # held once while running (membership entries take effect as they are appended),
        # so this is the fewest voters any replica may count (`tolerates_damage`).
        voters = len(set(self.nodes) - self.learned) + 1
        smallest = self.network.smallest_group
        self.network.smallest_group = voters if smallest is None else min(smallest, voters)

    def receive(self, src: str, message: dict) -> None:
        self.run(self._onMessageReceived, self.nodes[src], message)

    def peer_connected(self, name: str) -> None:
        self.run(self._onNodeConnected, self.nodes[name])

    def peer_disconnected(self, name: str) -> None:
        self.run(self._onNodeDisconnected, self.nodes[name])

    def run(self, function, *args) -> None:
        """Call into the replica; if it dies in there (ProcessKilled), the simulation kills it.
        A call made while the replica is already in one (it learnt a peer while handling a
        message, and connecting calls back into it) lets its death through to the outer one:
        the process dies as a whole, not just the inner call."""
        if self._running:
            function(*args)
            return
        self._running = True
        try:
            function(*args)
        except ProcessKilled as killed:
            self.network.on_killed(killed)
        finally:
            self._running = False


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
    check_match: bool = True   # the match-index check (an early sign, not one of Figure 3's)
    # The voters after committed entries 1..i, i = 0, 1, ...: as far as every committed
    # entry has been seen (check_configurations). Set to the founders by the Simulation.
    configurations: list[frozenset] = field(default_factory=list)

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
            # A replica's applied state only moves forward while it runs (a restart begins
            # again from its snapshot): going back means it installed an older snapshot.
            if obj.raftLastApplied < replica.last_applied:
                self.fail(f"{name}'s applied state went back from index {replica.last_applied} "
                          f"to {obj.raftLastApplied} (an older snapshot installed)")
            replica.last_applied = obj.raftLastApplied
        self.check_logs(sim)
        self.check_configurations(sim)
        if self.check_match:
            self.check_match_indexes(sim)

    def check_match_indexes(self, sim: "Simulation") -> None:
        """What a leader counts towards a commit is true: when it records that a follower in
        its own term holds its log up to index m, the follower's log has the leader's
        entries there (acknowledged entries are synced, so no crash loses them; a disk that
        lost them must have left the follower unable to vote until it has them again). An old
        term's acknowledgment counted in a new term breaks this before it breaks a commit."""
        for name, replica in sim.replicas.items():
            obj = replica.obj
            if not obj._isLeader():
                continue
            log, term = entries(obj), obj.raftCurrentTerm
            for node, match in obj._SyncObj__raftMatchIndex.items():
                other = sim.replicas.get(node.id)
                if other is None or other.obj.raftCurrentTerm != term or match < log[0][1]:
                    continue
                theirs = entries(other.obj)
                if match < theirs[0][1]:
                    continue
                if match > theirs[-1][1] and node.id in sim.damaged and \
                        refuses_votes_until(other.obj) >= match:
                    # Its disk lost them (a detected corruption, repaired from the peers: the
                    # leader's match index predates the repair). It knows, and neither votes
                    # nor campaigns until it holds entries up to there again, so no leader
                    # lacking them can win with it: Raft's quorum intersection still holds,
                    # through a replica that refuses to vote instead of one that holds them.
                    continue
                if match > theirs[-1][1] or theirs[match - theirs[0][1]] != log[match - log[0][1]]:
                    held = theirs[match - theirs[0][1]][2] if match <= theirs[-1][1] else "nothing"
                    self.fail(f"leader {name} (term {term}) counts {node.id} as holding its entry "
                              f"{match} (term {log[match - log[0][1]][2]}), but {node.id} holds {held} there")

    def check_configurations(self, sim: "Simulation") -> None:
        """Raft §6: a server uses the latest configuration in its log, committed or not, and
        (§7) a snapshot carries the configuration as of its last entry. So a replica whose log
        begins at index F > 1 (its snapshot's) counts as voters exactly the group's voters
        after the committed entries 1..F, with the membership entries of its own log applied
        in order on top; one whose log begins at 1 (no snapshot), the configuration it was
        started with (its cluster file's, `Simulation.initial`) with its log applied on top.
        (A replica that has received nothing yet, only its initial entry, is not checked;
        nor is one whose F lies past the committed entries seen so far; nor one whose disk
        was damaged: it is repaired with the cluster file the operator gives it, which
        `membership_steps.before_heal` models only loosely, so what it must count is not
        known here. Those are left to the check of the entries its own log names.)"""
        for name, replica in sim.replicas.items():
            if not replica.ticked:
                continue   # configured from its log on its first tick (raft_fixes.configure)
            log = entries(replica.obj)
            first = log[0][1]
            if (log[-1][1] <= 1 and name not in sim.founders) or name in sim.damaged:
                self._check_named_in_log(name, replica, log)
                continue
            base = set(sim.initial.get(name, sim.founders)) if first <= 1 else self.configuration_after(first)
            if base is None:
                continue
            expected = set(base)
            for command, _, _ in log:
                if command[:1] == _MEMBERSHIP:
                    op, node = pickle.loads(command[1:])[:2]
                    (expected.add if op == "add" else expected.discard)(node)
            counted = {node.id for node in replica.obj.otherNodes}
            for node in sorted((expected | counted) - {name}):
                if (node in counted) != (node in expected):
                    self.fail(f"{name} {'counts' if node in counted else 'does not count'} {node} as a "
                              f"voter, but the committed entries up to its snapshot (index {first}) and "
                              f"its log {'remove' if node in counted else 'add'} it")

    def _check_named_in_log(self, name: str, replica, log: list) -> None:
        """For every node a membership entry of the replica's log names: it counts that node
        as a voter if and only if the last such entry adds it (Raft §6)."""
        latest: dict[str, bool] = {}
        for command, _, _ in log:
            if command[:1] == _MEMBERSHIP:
                op, node = pickle.loads(command[1:])[:2]
                latest[node] = op == "add"
        counted = {node.id for node in replica.obj.otherNodes}
        for node, member in latest.items():
            if node != name and (node in counted) != member:
                self.fail(f"{name} {'does not count' if member else 'counts'} {node} as a voter, "
                          f"but the last change of its log about {node} {'adds' if member else 'removes'} it")

    def configuration_after(self, index: int) -> frozenset | None:
        """The voters after committed entries 1..index, or None if one is not seen yet."""
        while len(self.configurations) <= index and len(self.configurations) in self.committed:
            voters = set(self.configurations[-1])
            command = self.committed[len(self.configurations)][1]
            if command[:1] == _MEMBERSHIP:
                op, node = pickle.loads(command[1:])[:2]
                (voters.add if op == "add" else voters.discard)(node)
            self.configurations.append(frozenset(voters))
        return self.configurations[index] if index < len(self.configurations) else None

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


_MEMBERSHIP = bytes((syncobj_module._COMMAND_TYPE.MEMBERSHIP,))


def entries(obj: SyncObj) -> list:
    """A replica's Raft log, as (command, index, term) tuples (the harness may look inside)."""
    journal = obj._SyncObj__raftLog
    return [journal[i] for i in range(len(journal))]


def refuses_votes_until(obj: SyncObj) -> int:
    """The index replica `obj` must hold again before it votes or campaigns (0: none): its
    disk lost entries (consensus/raft_fixes.py, rule 3). Read from the journal too, as the
    replica does on its first tick or vote request, whichever comes first."""
    journal = obj._SyncObj__raftLog
    marker = journal.catch_up_to() if hasattr(journal, "catch_up_to") else None
    lost = obj.raftCommitIndex if obj.raftCommitIndex > entries(obj)[-1][1] else None
    return max(raft_fixes.missing_committed_up_to(obj) or 0, marker or 0, lost or 0)


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


# ------------------------------------------------------------------ the disks

class Disk:
    """Each file's durable content, as `consensus.storage.record_durable` reports it
    (the simulation hooks that function), and what a power cut leaves of a directory."""

    def __init__(self) -> None:
        self.durable: dict[str, bytes] = {}

    def record(self, path, length: int | None = None) -> None:
        path = os.path.abspath(path)
        with open(path, "rb") as file:
            self.durable[path] = file.read() if length is None else file.read(length)

    def power_cut(self, directory: Path, tear: random.Random | None = None) -> dict[str, int]:
        """Put every file of `directory` back to its durable content (removing files that never
        became durable, restoring durable ones removed or renamed away since). With `tear`, a file
        whose undurable part follows its durable content keeps a random prefix of that part,
        garbage a third of the time. Returns the bytes each file lost."""
        lost = {}
        for current in sorted(directory.iterdir()):
            if not current.is_file():
                continue
            key = os.path.abspath(current)
            data = current.read_bytes()
            durable = self.durable.get(key)
            if durable is None:
                current.unlink()
                lost[current.name] = len(data)
                continue
            keep = durable
            if tear is not None and len(data) > len(durable) and data.startswith(durable):
                torn = data[len(durable):len(durable) + tear.randint(0, len(data) - len(durable))]
                if torn and tear.random() < 1 / 3:
                    torn = tear.randbytes(len(torn))
                keep = durable + torn
            if keep != data:
                current.write_bytes(keep)
            lost[current.name] = len(data) - len(keep)
        for key, content in self.durable.items():
            path = Path(key)
            if path.parent == directory and not path.exists():
                path.write_bytes(content)
                lost[path.name] = -len(content)
        return lost

    def forget(self, directory: Path) -> None:
        """The directory was moved away (an operator's recovery): nothing in it is durable."""
        for key in [k for k in self.durable if Path(k).parent == directory]:
            del self.durable[key]


def corrupt_journal(path: Path, rng: random.Random, durable: int | None = None,
                    committed: int | None = None) -> str | None:
    """Flip one bit in a random whole record among the first `durable` bytes (all if None) of
    the journal at `path`; say where (None: no such record).

    Never in the file's last whole record when its index is past `committed` (the saved
    commit index; None: none saved): with nothing sound after it, damage there looks exactly
    like a write torn by a crash, which the journal cuts (consensus/journal.py, `_load`).
    With one fsync per append no journal can tell the two apart: a torn tail is bytes
    written after the last fsync, corruption of the last record is bytes written before it,
    and nothing on disk records where that fsync ended (it would take a second durable
    write per append, such as the "persist record" of protocol-aware recovery). Cutting
    such a record on a replica that had acknowledged it is a disk losing a synced write
    undetectably, outside Raft's stable-storage assumption, like an fsync that lies (not
    modelled either): a leader that counted that replica can then commit an entry only
    it still holds (schedule 15705000083 showed it). Damage the journal can detect (a
    sound record after it, or at or below the saved commit index) is what is modelled."""
    if not path.exists():
        return None
    data = bytearray(path.read_bytes())
    limit = len(data) if durable is None else min(durable, len(data))
    offset, records, last = journal_module.HEADER_SIZE, [], None
    while offset + journal_module.RECORD.size <= len(data):
        length, _ = journal_module.RECORD.unpack_from(data, offset)
        end = offset + journal_module.RECORD.size + length
        if length < journal_module.ENTRY.size or end > len(data):
            break
        index, _ = journal_module.ENTRY.unpack_from(data, offset + journal_module.RECORD.size)
        last = (offset, end, index)
        if end <= limit:
            records.append((offset, end))
        offset = end
    if last is not None and last[:2] in records and (committed is None or last[2] > committed):
        records.remove(last[:2])
    if not records:
        return None
    start, end = rng.choice(records)
    byte = rng.randrange(start, end)
    data[byte] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))
    return f"bit flipped at byte {byte} (record {records.index((start, end)) + 1} of {len(records)})"


@dataclass
class SnapshotWriter:
    """A forked snapshot writer (PySyncObj's useFork) as an actor of its own.

    It holds the data as it was at the fork. `finish` does the child's work: Bazar's
    (`snapshot.write_snapshot`: a unique temporary file, fsync, rename, fsync of the
    directory) or, when PySyncObj's own `serialize` forked it, PySyncObj's (a fixed
    `.tmp` name and a rename, no fsync)."""

    pid: int
    owner: str
    life: int                  # the incarnation of the replica that forked it
    file_name: str             # the StoragePath the replica gave its Serializer
    data: bytes                # pickled at the fork
    bazar: bool
    status: int | None = None  # None: running; 0: exited after its rename; 1: died or failed

    def finish(self) -> None:
        data = pickle.loads(self.data)
        try:
            if self.bazar:
                snapshot.write_snapshot(self.file_name, data)
            else:
                import gzip
                from pysyncobj import pickle as pysyncobj_pickle
                temporary = self.file_name + '.tmp'
                with open(temporary, 'wb') as file, gzip.GzipFile(fileobj=file, mode='wb') as packed:
                    pysyncobj_pickle.dump(data, packed)
                atomicReplace(temporary, self.file_name)
            self.status = 0
        except Exception:
            self.status = 1

    def die(self) -> None:
        self.status = 1


class _SimOs:
    """The `os` module the serializers see in a simulation with `fork_writer`: `fork` starts
    a SnapshotWriter (the parent's side of the fork; the child's work is `finish`) and
    `waitpid` reports on it, and `kill` (SIGKILL from `stop_own_writer`) ends it before its
    rename. Everything else is the real `os`."""

    def __init__(self, sim: "Simulation") -> None:
        self._sim = sim

    def __getattr__(self, name):
        return getattr(os, name)

    def fork(self) -> int:
        caller = sys._getframe(1)   # Bazar's or PySyncObj's Serializer.serialize
        return self._sim._fork(caller.f_locals["self"], caller.f_locals["data"],
                               bazar=caller.f_code is snapshot.serialize.__code__)

    def kill(self, pid: int, signal_number: int) -> None:
        """`snapshot.stop_own_writer` SIGKILLs the replica's own writer before a received
        snapshot is renamed into place. The writer is the simulation's, so the signal is
        too: it dies before its rename (a writer that already exited is unaffected). Handing
        the made-up pid to the real `os.kill` (as before) left the modelled writer running,
        free to rename its older snapshot over the received one later, which no real writer
        can do once killed and reaped; and on a machine with a large pid_max it could
        signal an unrelated process."""
        writer = self._sim.writers.get(pid)
        if writer is None:
            raise ProcessLookupError(pid)
        if writer.status is None:
            writer.die()

    def waitpid(self, pid: int, options: int) -> tuple[int, int]:
        """Non-blocking (WNOHANG, PySyncObj's `checkSerializing`): (0, 0) while the writer
        runs. Blocking (`stop_own_writer`, after its kill): the parent waits for the writer
        to end, so a writer still running finishes first."""
        writer = self._sim.writers.get(pid)
        if writer is None:
            raise ChildProcessError(pid)
        if writer.status is None:
            if options & os.WNOHANG:
                return 0, 0
            self._sim._finish(writer)
        return pid, 0 if writer.status == 0 else 256


# ------------------------------------------------------------- the simulation

@dataclass
class Replica:
    name: str
    directory: Path
    obj: SyncObj
    recorder: Recorder
    checked_commit: int = 0
    ticked: bool = False
    last_applied: int = 0


class Simulation:
    """A group of real SyncObj replicas on a SimNetwork, under a VirtualClock.

    Use as a context manager: it swaps PySyncObj's clock and randomness for the
    simulation's while open, and removes every file when closed.
    """

    # What each replica is built with (tests/sim/reads.py gives them Bazar's read side).
    transport_class = SimTransport
    recorder_class = Recorder

    def __init__(self, size: int = 3, seed: int = 0, compaction_entries: int = 1_000_000,
                 payload: int = 0, journal=None, fsync: bool = True, fork_writer: bool = False) -> None:
        self.names = [f"n{i + 1}" for i in range(size)]
        self.founders = tuple(self.names)   # the group as it starts, before any membership change
        self.clock = VirtualClock()
        self.random = random.Random(seed)
        self.network = SimNetwork(self.clock)
        self.network.on_killed = self._killed
        self.world = World(configurations=[frozenset(self.names)])
        self.compaction_entries = compaction_entries
        self.payload = b"x" * payload
        self.replicas: dict[str, Replica] = {}
        self.initial: dict[str, list[str]] = {}  # the peers each replica was first started with
        self.crashed: set[str] = set()
        self.refused: dict[str, str] = {}     # replicas that refused to start, and why
        self.fsync = fsync
        self.fork_writer = fork_writer
        self.disk = Disk()
        self.writers: dict[int, SnapshotWriter] = {}
        self.events: list[str] = []   # notable faults that happened, to explain a failure
        self.down_commit: dict[str, int] = {}   # a crashed replica's commit index when it went down
        self.damaged: set[str] = set()          # replicas whose disk was corrupted
        self._serializers: dict[int, tuple[str, int]] = {}   # id(Serializer) -> (replica, life)
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
            self._saved.append((syncobj_module, name, getattr(syncobj_module, name)))
            setattr(syncobj_module, name, value)
        # What becomes durable is remembered here, for power cuts (see Disk).
        others = [(storage, "record_durable", self.disk.record)]
        if self.fork_writer:
            fake = _SimOs(self)
            others += [(snapshot, "os", fake), (serializer_module, "os", fake)]
        for module, name, value in others:
            self._saved.append((module, name, getattr(module, name)))
            setattr(module, name, value)
        for name in self.names:
            self.start(name)
        self.network.reconnect()
        return self

    def __exit__(self, *exc) -> None:
        try:
            for name in list(self.replicas):
                self.crash(name)
        finally:
            for module, name, value in reversed(self._saved):
                setattr(module, name, value)
            shutil.rmtree(self.root, ignore_errors=True)

    # -- processes

    def conf(self, name: str):
        conf = syncobj_conf(RaftConfig(fsync=self.fsync, compaction_entries=self.compaction_entries,
                                       compaction_period=10 ** 9),
                            self.root / name, password=None, group_size=len(self.names))
        conf.autoTick = False          # the simulation ticks
        conf.useFork = self.fork_writer  # else snapshots are written in-line
        conf.logCompactionSplit = False
        return conf

    def start(self, name: str, peers: list[str] | None = None) -> None:
        """Start (or restart) replica `name` from its files, knowing `peers` (by default the
        group it was started with, as a process reads cluster.yaml: later changes come from
        its log). Raises what PySyncObj or the journal raise (JournalCorrupt: the replica
        refuses to start; see `restart`)."""
        recorder = self.recorder_class(self.world, name)
        peers = self.initial.get(name, self.names) if peers is None else peers
        self.initial.setdefault(name, list(peers))
        try:
            obj = SyncObj(name, [n for n in peers if n != name], conf=self.conf(name),
                          consumers=[recorder], nodeClass=SimNode,
                          transportClass=lambda so, me, others: self.transport_class(self.network, so, me, others))
        except BaseException:
            self.network.detach(name)
            raise
        self._serializers[id(obj._SyncObj__serializer)] = (name, self.network.life.get(name, 0))
        self.replicas[name] = Replica(name, self.root / name, obj, recorder)
        self.crashed.discard(name)

    def crash(self, name: str) -> None:
        """Graceful crash (SIGTERM): in-flight messages are lost, PySyncObj's `_doDestroy`
        syncs the journal and saves the Raft state, files stay as written."""
        replica = self.replicas.pop(name)
        self.network.detach(name)
        self.down_commit[name] = replica.obj.raftCommitIndex
        replica.obj._doDestroy()
        self.crashed.add(name)

    def _killed(self, killed: ProcessKilled) -> None:
        """A doomed replica died right after a send: what it sent stays deliverable."""
        self.events.append(f"{killed.name} died right after a send ({'power cut' if killed.power else 'SIGKILL'})")
        self.kill(killed.name, power=killed.power, keep_sent=True)

    def kill(self, name: str, power: bool = False, tear: random.Random | None = None,
             keep_sent: bool = False) -> None:
        """Hard crash. SIGKILL (`power` False): entries appended but not yet written are lost,
        written files stay as the kernel has them. Power cut (`power`): the replica's files go
        back to what was durable, with a torn tail if `tear` is given (Disk.power_cut), and its
        snapshot writer dies with it. `keep_sent`: what it sent is still delivered."""
        replica = self.replicas.pop(name)
        self.network.detach(name, keep_sent=keep_sent)
        obj = replica.obj
        self.down_commit[name] = obj.raftCommitIndex
        journal = obj._SyncObj__raftLog
        for fd in (getattr(journal, "_fd", None), getattr(journal, "_lock_fd", None)):
            if fd is not None:
                os.close(fd)
        serializer = obj._SyncObj__serializer
        incoming = serializer._Serializer__incomingTransmissionFile
        if incoming is not None and not isinstance(incoming, bytes):
            incoming.close()
        for transmission in serializer._Serializer__transmissions.values():
            if "file" in transmission:
                transmission["file"].close()
        if power:
            for writer in self.running_writers(name):
                writer.die()
            self.disk.power_cut(replica.directory, tear)
        self.crashed.add(name)

    def restart(self, name: str, writer_finishes: bool = True) -> bool:
        """Start a crashed replica again; False if it refused to (JournalCorrupt: damaged
        durable data), which is recorded in `refused` and is no violation.

        The data directory's lock is held by any snapshot writer the replica's previous
        incarnation forked (it inherited the descriptor), so the new process waits until
        that writer has ended: with its rename done (`writer_finishes`) or killed before
        it (PR_SET_PDEATHSIG)."""
        for writer in self.running_writers(name):
            self._finish(writer) if writer_finishes else writer.die()
        try:
            self.start(name)
        except journal_module.JournalCorrupt as error:
            self.refused[name] = str(error)
            self.events.append(f"{name} refused to start: {error}")
            return False
        self.refused.pop(name, None)
        self.network.reconnect()
        return True

    def recover(self, name: str) -> None:
        """The operator's recovery of a replica that refused to start on damaged durable
        entries, as JournalCorrupt's message says: start it once with
        BAZAR_REPAIR_JOURNAL=1. It keeps its term, vote and the sound entries before the
        damage, and neither votes nor campaigns until a leader has sent it the rest.
        (Moving its data directory away and starting it empty, the procedure documented
        before, forgot its vote and its log: two leaders in one term.)"""
        self.refused.pop(name, None)
        saved = os.environ.get(journal_module.REPAIR_ENV)
        os.environ[journal_module.REPAIR_ENV] = "1"
        try:
            self.start(name)
        finally:
            if saved is None:
                os.environ.pop(journal_module.REPAIR_ENV, None)
            else:
                os.environ[journal_module.REPAIR_ENV] = saved

    def corrupt(self, name: str, rng: random.Random) -> str | None:
        """Flip a bit in a durable record of crashed replica `name`'s journal."""
        assert name in self.crashed
        path = self.root / name / "journal.bin"
        durable = self.disk.durable.get(os.path.abspath(path))
        state = path.with_name(path.name + journal_module.STATE_SUFFIX)
        committed = journal_module._read_state(state).get("commit_index") if state.exists() else None
        where = corrupt_journal(path, rng, None if durable is None else len(durable), committed)
        if where:
            self.damaged.add(name)
            self.events.append(f"{name}'s journal: {where}")
        return where

    # -- snapshot writers

    def _fork(self, serializer, data, bazar: bool) -> int:
        owner, life = self._serializers[id(serializer)]
        pid = 1_000_000 + len(self.writers)
        self.writers[pid] = SnapshotWriter(pid, owner, life, serializer._Serializer__fileName,
                                           pickle.dumps(data), bazar)
        return pid

    def running_writers(self, name: str | None = None) -> list[SnapshotWriter]:
        return [w for w in self.writers.values()
                if w.status is None and (name is None or w.owner == name)]

    def finish_writer(self, position: int) -> bool:
        """Let one running snapshot writer (any: `position` modulo their number) rename its file."""
        running = self.running_writers()
        if not running:
            return False
        self._finish(running[position % len(running)])
        return True

    def _finish(self, writer: SnapshotWriter) -> None:
        """Let `writer` rename its snapshot; note it when that puts an older one in place."""
        path = Path(writer.file_name)
        before = journal_repair.snapshot_tail(path)[1][1] if path.exists() else 0
        writer.finish()
        written = pickle.loads(writer.data)[1][1]
        if writer.status == 0 and written < before:
            alive = writer.owner in self.replicas and self.network.life.get(writer.owner) == writer.life
            self.events.append(f"{writer.owner}'s snapshot writer renamed its snapshot of index {written} "
                               f"over one of index {before} ({'its replica running' if alive else 'a straggler'})")

    def add_replica(self, name: str, peers: list[str]) -> None:
        """Start a new replica `name` knowing `peers`; it takes part once a membership
        change adds it (`SyncObj.addNodeToCluster`) to the others' configuration."""
        self.names.append(name)
        self.start(name, peers)
        self.network.reconnect()

    # -- driving

    def tick(self, name: str) -> None:
        replica = self.replicas[name]
        replica.obj._SyncObj__transport.run(replica.obj._onTick, 0)
        if name not in self.replicas:
            return   # it died in there
        if not replica.ticked:   # its first tick loads the snapshot file
            replica.ticked = True
            # Durability: what a replica counted as committed was on its disk (synced before
            # the commit took effect, snapshots synced before the journal was cut), so a
            # restart finds it again, unless the disk itself was damaged.
            end, down = entries(replica.obj)[-1][1], self.down_commit.get(name, 0)
            if name not in self.damaged and end < down:
                self.world.fail(f"{name} restarted with its log ending at {end}, below the commit "
                                f"index {down} it had when it went down (no disk fault)")

    def tick_all(self) -> None:
        for name in sorted(self.replicas):
            if name in self.replicas:
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
        """One round of normal operation: time passes, snapshot writers finish, every replica
        ticks, messages arrive."""
        self.clock.advance(seconds)
        for writer in self.running_writers():
            self._finish(writer)
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
        if names and rng.random() < load:   # every replica may be down (doomed ones die in here)
            self.write(rng.choice(names), rng.randint(1, 6))
        rng.shuffle(names)
        for name in names:
            if rng.random() < 0.9 and name in self.replicas:
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

    def storm_step(self, rng: random.Random, load: float = 0.5, hold: float = 0.07,
                   writers: float | dict = 0.3) -> None:
        """Like `chaotic_step`, with more: messages held back (`SimNetwork.hold`, that share of
        the choices) and released much later, each running snapshot writer finishing with
        probability `writers` (or `writers[its replica]`: one replica's disk may be slow),
        longer pauses."""
        self.clock.advance(rng.choice((0.001, 0.01, 0.03, 0.06, 0.15, 0.3, 0.6)))
        names = sorted(self.replicas)
        if names and rng.random() < load:
            self.write(rng.choice(names), rng.randint(1, 6))
        rng.shuffle(names)
        for name in names:
            if rng.random() < 0.9 and name in self.replicas:
                self.tick(name)
        for writer in self.running_writers():
            if rng.random() < (writers.get(writer.owner, 0.3) if isinstance(writers, dict) else writers):
                self._finish(writer)
        network = self.network
        for _ in range(rng.randint(0, 2 * network.in_flight() + 2)):
            links = network.links()
            choice = rng.random()
            if network.held and (choice < 0.005 or not links and choice < 0.05):
                network.release(rng.randrange(len(network.held)))
            elif network.stragglers and (choice < 0.08 or not links):
                network.deliver_straggler(rng.randrange(len(network.stragglers)))
            elif not links:
                break
            elif choice < 0.16:
                network.deliver(rng.choice(links), position=rng.randint(1, 8))
            elif choice < 0.20:
                network.deliver(rng.choice(links), duplicate=True)
            elif choice < 0.23:
                network.drop(rng.choice(links))
            elif choice < 0.23 + hold:
                network.hold(rng.choice(links), position=rng.randint(0, 3))
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

    def behind_an_unknown_leader(self, extra: dict | None = None) -> list[str]:
        """The members of the leader's configuration that lag behind its commit, if every
        one of them lags because its own configuration does not name the leader (see
        `UnknownLeader`); else []. `extra`: more lagging members, name -> transport."""
        leader = self.leader()
        if leader is None:
            return []
        obj = self.replicas[leader].obj
        behind = {n.id: self.network.transports.get(n.id) for n in obj.otherNodes
                  if n.id not in self.replicas or self.replicas[n.id].obj.raftLastApplied != obj.raftCommitIndex}
        behind.update(extra or {})
        unknown = [name for name, transport in behind.items() if transport is not None and not transport.knows(leader)]
        return sorted(unknown) if behind and len(unknown) == len(behind) else []

    def converged(self) -> bool:
        """One leader, every member of its configuration alive, and all have applied the
        same, final state (a replica a membership change removed no longer counts)."""
        leader = self.leader()
        if leader is None:
            return False
        obj = self.replicas[leader].obj
        members = [self.replicas.get(n) for n in {node.id for node in obj.otherNodes} | {leader}]
        if None in members:
            return False
        commit = obj.raftCommitIndex
        if entries(obj)[-1][1] != commit:
            return False
        return all(r.obj.raftLastApplied == commit and r.obj.raftCommitIndex == commit
                   for r in members) and len({r.recorder.digest() for r in members}) == 1

    def heal_everything(self) -> None:
        """Every replica back (refusing ones recovered by the operator), every link up,
        nothing late or held back any more, nobody doomed."""
        self.network.doomed.clear()
        for name in sorted(self.crashed):
            if not self.restart(name):
                self.recover(name)
        self.network.heal()
        self.network.stragglers.clear()
        self.network.held.clear()

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
