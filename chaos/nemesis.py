"""The nemesis: faults injected on a schedule derived from a seed.

A plan is a list of faults with start times and lengths, a quiet gap after
each. The plan (kinds, times, which group and role to hit) depends only on the
seed; which concrete node that is (the leader *at that moment*) is decided when
the fault starts. Every fault is healed at the end of its window, and
`heal_all()` undoes whatever is still in force.

Besides the classic faults (kill, pause, partitions, restart everything),
five are aimed at the windows in which a Raft log can lose committed entries,
each under a burst of writes (the workload's `write_load` clients):

* ``pause-follower``: one follower stopped for seconds while the others commit,
  so it comes back far behind;
* ``follower-swap``: that, then the followers swapped at once (the paused one
  resumed, the other paused), and the leader SIGKILLed as soon as it commits
  an entry with the resumed follower's acknowledgment. A follower that cuts
  entries it already acknowledged while catching up (PySyncObj 0.3.17 does,
  on an overlapping append; consensus/raft_fixes.py corrects it) would be the
  only holder of that commit;
* ``kill-compacting``: SIGKILL a replica while its forked snapshot writer is
  alive, and restart it at once, while a writer that outlived its parent
  (PySyncObj's did) could still be finishing;
* ``restart-group-loop``: SIGKILL a whole group, restart it, again and again.

* ``power-cut``: every process SIGKILLed and every replica's files cut back to
  what had been made durable (fsynced) when the power went, torn writes
  included. The power goes at an instant when some replica has written bytes
  it has not yet made durable: under the burst, the replicas are stopped
  (SIGSTOP) together now and then, and their files compared with what was made
  durable; if nothing is in flight they run on, else the power goes then (at the
  latest a second before the window ends, in flight or not). It needs the
  storage test mode (consensus/storage.py), which the runner switches on for it.
"""
from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
from dataclasses import asdict, dataclass, field

from bazar.chaos.network import Firewall
from bazar.consensus.storage import POWER_CUT_ENV, not_yet_durable, power_cut
from bazar.local.cluster import LocalCluster

log = logging.getLogger("bazar.chaos.nemesis")

FAULT_KINDS = ("kill", "pause", "partition-leader", "partition-halves", "restart-all",
               "pause-follower", "follower-swap", "kill-compacting", "restart-group-loop", "power-cut")
NEEDS_FIREWALL = {"partition-leader", "partition-halves"}
UNDER_WRITE_LOAD = {"pause-follower", "follower-swap", "kill-compacting", "restart-group-loop", "power-cut"}
# A log compaction every few hundred entries (and every second or two), so that
# kill-compacting finds snapshot writers at work.
COMPACTION_FORCED = {"compaction_entries": 300, "compaction_period": 2.0}
FIRST_QUIET = 3.0
FAULT_LENGTH = (3.0, 6.0)
# The swap needs a long first pause (a backlog of many entries) and time after the kill to elect.
FAULT_LENGTHS = {"follower-swap": (6.0, 9.0)}
SWAP_PAUSE_SHARE = 0.6       # of the window: the first follower's pause
QUIET_LENGTH = (3.0, 5.0)
SWAP_QUIESCE = 0.05          # seconds for acknowledgments already on the wire to arrive
COMMIT_WAIT = 10.0           # seconds for the leader to commit with the resumed follower's ack
ELECTION_BOUND = 10.0        # seconds for the survivors to elect a leader (normally well under one)
ORPHAN_GRACE = 5.0           # seconds an orphaned snapshot writer may take to finish
TORN_BYTES = (0, 100, 4096)  # how much of a write in flight a power cut may leave on disk
BURST_HEAD_START = 0.5       # seconds of write burst before a power cut first looks for bytes in flight
LOOK_INTERVAL = (0.02, 0.15)  # seconds the replicas run between two looks
POWER_OFF_AT_LEAST = 1.0     # seconds the power stays off before the window ends
STOP_BOUND = 1.0             # seconds for SIGSTOPped processes to stop (one inside fsync finishes it first)


@dataclass
class PlannedFault:
    kind: str
    start: float          # seconds after the run starts
    length: float
    group: str            # which group's nodes to hit (for kill / pause / partition-leader)
    role: str             # "leader" or "follower"
    choice: int           # tie-breaker drawn from the seed: which follower, which halves


@dataclass
class FaultWindow:
    kind: str
    start: float
    end: float | None = None
    targets: list[str] = field(default_factory=list)
    detail: str = ""      # what the fault saw happen (the swap's commit and election, kill rounds)
    lost_bytes: int | None = None  # a power cut's: bytes not yet durable that it dropped
    first_success_after: float | None = None  # filled in by the checker's availability report

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "first_success_after"}


def plan(kinds: list[str], duration: float, seed: int) -> list[PlannedFault]:
    """A reproducible schedule that uses every kind at least once if time allows."""
    if not kinds:
        return []
    rng = random.Random(seed)
    order: list[str] = []
    faults: list[PlannedFault] = []
    t = FIRST_QUIET
    while True:
        if not order:
            order = list(kinds)
            rng.shuffle(order)
        kind = order.pop()
        length = rng.uniform(*FAULT_LENGTHS.get(kind, FAULT_LENGTH))
        if t + length > duration - 1.0:
            break
        faults.append(PlannedFault(kind, round(t, 2), round(length, 2),
                                   rng.choice(["catalog", "order"]), rng.choice(["leader", "follower"]),
                                   rng.randrange(1 << 30)))
        t += length + rng.uniform(*QUIET_LENGTH)
    return faults


class Nemesis:
    """Carries out a plan against a LocalCluster (and a Firewall for partitions).

    `write_load` is set for the length of each fault in UNDER_WRITE_LOAD (the
    workload's load clients restock while it is set).
    """

    def __init__(self, cluster: LocalCluster, firewall: Firewall | None,
                 write_load: threading.Event | None = None) -> None:
        self.cluster = cluster
        self.firewall = firewall
        self.write_load = write_load
        self.current: FaultWindow | None = None
        self.windows: list[FaultWindow] = []
        self._stopped: set[str] = set()
        self._orphans: list[int] = []
        self._stop = threading.Event()

    def run(self, faults: list[PlannedFault], t0: float, stop: threading.Event) -> list[FaultWindow]:
        """Inject each fault at its time (relative to monotonic `t0`); must run on the main thread,
        which started the cluster's processes (see LocalCluster)."""
        self._stop = stop
        for fault in faults:
            if stop.wait(max(0.0, t0 + fault.start - time.monotonic())):
                break
            window = FaultWindow(fault.kind, round(time.monotonic() - t0, 3))
            self.current = window
            self.windows.append(window)
            if fault.kind in UNDER_WRITE_LOAD and self.write_load is not None:
                self.write_load.set()
            try:
                window.targets = self._inject(fault, window, deadline=t0 + fault.start + fault.length)
            except Exception as exc:  # a fault that cannot be injected is reported, not fatal
                log.warning("could not inject %s: %s", fault.kind, exc)
                window.targets = [f"failed: {exc}"]
            log.info("t=%.1f %s %s %s", window.start, fault.kind, ",".join(window.targets), window.detail)
            stop.wait(max(0.0, t0 + fault.start + fault.length - time.monotonic()))
            self.heal_all()
            if self.write_load is not None:
                self.write_load.clear()
            window.end = round(time.monotonic() - t0, 3)
            self.current = None
        return self.windows

    def heal_all(self) -> None:
        """Undo every fault still in force: heal the network, resume, restart."""
        if self.firewall is not None:
            self.firewall.heal()
        for name in list(self.cluster.paused):
            self.cluster.resume(name)
        for name in sorted(self._stopped):
            if not self.cluster.is_running(name):
                self.cluster.start_process(name)
        self._stopped.clear()
        for pid in self._orphans:
            end_orphan(pid)
        self._orphans.clear()

    # -- the faults -----------------------------------------------------------

    def _inject(self, fault: PlannedFault, window: FaultWindow, deadline: float) -> list[str]:
        """Start `fault` (the log-safety faults play out until `deadline`); return its targets."""
        if fault.kind == "pause-follower":
            target = self._pick(PlannedFault(fault.kind, fault.start, fault.length, fault.group,
                                             "follower", fault.choice))
            self.cluster.pause(target)
            return [target]
        if fault.kind == "follower-swap":
            pause = SWAP_PAUSE_SHARE * (deadline - time.monotonic())
            outcome = swap_followers_and_kill_leader(self.cluster, fault.group, pause, fault.choice, self._stop)
            self._stopped.add(outcome.leader)
            window.detail = outcome.describe()
            return [outcome.first_paused, outcome.second_paused, outcome.leader]
        if fault.kind == "kill-compacting":
            victim, writer = kill_while_compacting(self.cluster, self._replicas(), deadline, random.Random(fault.choice))
            self.cluster.start_process(victim)
            if writer is not None:
                self._orphans.append(writer)
            window.detail = (f"killed while its snapshot writer (pid {writer}) was alive" if writer
                             else "no snapshot writer seen: killed at random")
            return [victim]
        if fault.kind == "restart-group-loop":
            members = [n.id for n in self.cluster.config.group(fault.group)]
            self._stopped.update(members)  # restarted at heal if a round was cut short
            rounds = restart_group_loop(self.cluster, fault.group, deadline, random.Random(fault.choice), self._stop)
            window.detail = f"{rounds} round(s) of SIGKILL and restart of every {fault.group} replica"
            return members
        if fault.kind == "power-cut":
            root = self.cluster.env.get(POWER_CUT_ENV)
            if not root:
                raise RuntimeError(f"power cuts need the storage test mode (${POWER_CUT_ENV})")
            rng = random.Random(fault.choice)
            torn = rng.choice(TORN_BYTES)
            self._stopped.update(self.cluster.names)
            looks, in_flight = cut_power_with_writes_in_flight(
                self.cluster, self._replicas(), root, deadline - POWER_OFF_AT_LEAST, rng, self._stop)
            lost = power_cut(root, [self.cluster.config.data_dir / name for name in self._replicas()], torn)
            window.lost_bytes = sum(n for n in lost.values() if n > 0)
            window.detail = (f"{window.lost_bytes} bytes that were not yet durable lost from "
                             f"{sum(1 for n in lost.values() if n > 0)} file(s), writes torn after {torn} bytes; "
                             + (f"{in_flight} bytes were in flight when the power went (look {looks})"
                                if in_flight else f"nothing was in flight in {looks} look(s): struck anyway"))
            return list(self.cluster.names)
        if fault.kind == "kill":
            target = self._pick(fault)
            self.cluster.kill(target)
            self._stopped.add(target)
            return [target]
        if fault.kind == "pause":
            target = self._pick(fault)
            self.cluster.pause(target)
            return [target]
        if fault.kind == "restart-all":
            for name in self.cluster.names:
                self.cluster.kill(name)
                self._stopped.add(name)
            return list(self.cluster.names)
        if fault.kind == "partition-leader":
            leader = self.cluster.leader(fault.group) or self._pick(fault)
            isolated = [self._host(leader)]
            others = [self._host(n) for n in self._replicas() if n != leader]
            self._require_firewall().cut(isolated, others)
            return [leader]
        if fault.kind == "partition-halves":
            replicas = self._replicas()
            random.Random(fault.choice).shuffle(replicas)
            half = replicas[: len(replicas) // 2]
            rest = replicas[len(replicas) // 2:]
            self._require_firewall().cut([self._host(n) for n in half], [self._host(n) for n in rest])
            return [",".join(sorted(half)) + " | " + ",".join(sorted(rest))]
        raise ValueError(f"unknown fault kind {fault.kind!r}")

    def _pick(self, fault: PlannedFault) -> str:
        """The group's current leader, or one of its followers, as the plan asks."""
        members = [n.id for n in self.cluster.config.group(fault.group) if self.cluster.is_running(n.id)]
        leader = self.cluster.leader(fault.group)
        if fault.role == "leader" and leader is not None:
            return leader
        followers = [m for m in members if m != leader] or members
        return followers[fault.choice % len(followers)]

    def _replicas(self) -> list[str]:
        return [n.id for n in self.cluster.config.catalog + self.cluster.config.order]

    def _host(self, name: str) -> str:
        return self.cluster.config.node(name).raft.host

    def _require_firewall(self) -> Firewall:
        if self.firewall is None:
            raise RuntimeError("partitions are unavailable on this machine")
        return self.firewall


# -- the log-safety faults, usable on their own (tests/integration/test_log_safety.py) ---------

@dataclass
class SwapOutcome:
    """What one follower swap did and saw."""

    leader: str
    first_paused: str
    second_paused: str
    commit_at_swap: int
    commit_seen: int | None          # the leader's first commit index past commit_at_swap, if any
    new_leader: str | None = None
    election_seconds: float | None = None

    def describe(self) -> str:
        committed = (f"committed {self.commit_seen} > {self.commit_at_swap} with {self.first_paused}'s ack"
                     if self.commit_seen is not None
                     else f"never committed past {self.commit_at_swap} in {COMMIT_WAIT:.0f} s")
        elected = (f"{self.new_leader} elected in {self.election_seconds:.2f} s" if self.new_leader
                   else f"NO LEADER elected within {ELECTION_BOUND:.0f} s")
        return (f"paused {self.first_paused}, swapped to {self.second_paused}; leader {self.leader} "
                f"{committed}, SIGKILLed; {elected}")


def swap_followers_and_kill_leader(cluster: LocalCluster, group: str, pause_seconds: float, choice: int,
                                   stop: threading.Event | None = None) -> SwapOutcome:
    """Pause one follower for `pause_seconds`, swap, and kill the leader at its next commit.

    Meant to run under write load. The leader and the other follower commit
    while the first is paused; then the second is paused and the first resumed.
    From then on every commit needs the resumed follower's acknowledgment, so
    the first commit index past the one at the swap is an entry that follower
    said it holds. The leader is SIGKILLed the moment /status shows it, and
    the second follower resumed: the two survivors must elect a leader whose
    log has that entry. The killed leader is left down (the caller restarts
    it), so the survivors alone decide what survives.
    """
    stop = stop or threading.Event()
    # Right after another fault (a power cut, say) the group may still be electing.
    leader = wait_for_leader(cluster, group, ELECTION_BOUND)
    if leader is None:
        raise RuntimeError(f"the {group} group has no leader")
    followers = sorted(n.id for n in cluster.config.group(group)
                       if n.id != leader and cluster.is_running(n.id) and n.id not in cluster.paused)
    if len(followers) < 2:
        raise RuntimeError(f"the swap needs two running {group} followers, found {followers}")
    first, second = followers[choice % 2], followers[(choice + 1) % 2]
    cluster.pause(first)
    stop.wait(pause_seconds)
    cluster.pause(second)
    # With both followers stopped the leader can commit nothing more: once the
    # acknowledgments already on the wire are in, its commit index stays put.
    time.sleep(SWAP_QUIESCE)
    at_swap = _commit_index(cluster, leader)
    cluster.resume(first)
    seen = _wait_commit_past(cluster, leader, at_swap, time.monotonic() + COMMIT_WAIT)
    cluster.kill(leader)
    cluster.resume(second)
    outcome = SwapOutcome(leader, first, second, at_swap, seen)
    killed_at = time.monotonic()
    outcome.new_leader = wait_for_leader(cluster, group, ELECTION_BOUND)
    if outcome.new_leader is not None:
        outcome.election_seconds = round(time.monotonic() - killed_at, 3)
    return outcome


def _commit_index(cluster: LocalCluster, name: str) -> int:
    for _ in range(20):
        status = cluster.status(name, timeout=1.0)
        if status is not None:
            return int(status["commit_index"])
    raise RuntimeError(f"{name} does not answer /status")


def _wait_commit_past(cluster: LocalCluster, leader: str, index: int, deadline: float) -> int | None:
    """Poll the leader's /status as fast as it answers until its commit index exceeds `index`."""
    while time.monotonic() < deadline:
        status = cluster.status(leader, timeout=0.5)
        if status is not None and int(status["commit_index"]) > index:
            return int(status["commit_index"])
    return None


def wait_for_leader(cluster: LocalCluster, group: str, timeout: float) -> str | None:
    """The group's leader as soon as one (running, not paused) says so; None after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leader = cluster.leader(group)
        if leader is not None:
            return leader
        time.sleep(0.05)
    return None


def kill_while_compacting(cluster: LocalCluster, names: list[str], deadline: float,
                          rng: random.Random) -> tuple[str, int | None]:
    """SIGKILL the first of `names` seen with a live child (its forked snapshot writer).

    Returns the victim and the writer's pid, which outlives its parent, as it
    would after a crash of the main process. If no writer shows up before
    `deadline`, a random one of `names` is killed instead (writer None).
    """
    candidates = [n for n in names if cluster.is_running(n) and n not in cluster.paused]
    while time.monotonic() < deadline:
        children = cluster.children()
        busy = [n for n in candidates if children.get(n)]
        if busy:
            victim = rng.choice(busy)
            cluster.kill(victim)
            return victim, children[victim][0]
        time.sleep(0.002)
    victim = rng.choice(candidates)
    cluster.kill(victim)
    return victim, None


def restart_group_loop(cluster: LocalCluster, group: str, deadline: float, rng: random.Random,
                       stop: threading.Event) -> int:
    """Until `deadline`: let the group elect and commit a little, then SIGKILL every member and
    restart them all. Returns the number of rounds."""
    members = [n.id for n in cluster.config.group(group)]
    rounds = 0
    while time.monotonic() < deadline and not stop.is_set():
        wait_for_leader(cluster, group, max(0.0, deadline - time.monotonic()))
        if stop.wait(rng.uniform(0.1, 0.8)) or time.monotonic() >= deadline:
            break
        for name in members:
            cluster.kill(name)
        for name in members:
            cluster.start_process(name)
        rounds += 1
    return rounds


def cut_power_with_writes_in_flight(cluster: LocalCluster, replicas: list[str], root: str, deadline: float,
                                    rng: random.Random, stop: threading.Event) -> tuple[int, int]:
    """SIGKILL every process of `cluster` at an instant when some of `replicas` hold bytes not
    yet durable (storage test mode, shadow copies under `root`); the caller then puts back
    what was durable (`power_cut`). Meant to run under write load.

    Looks now and then: stops every running replica (SIGSTOP, and waits until each has
    stopped: the power goes at one instant for all), compares their files with what was made
    durable, and resumes them if nothing is in flight. Strikes at the first look that finds
    bytes in flight, or at the last look at `deadline` (or when `stop` is set) regardless.
    Returns (looks taken, bytes in flight when it struck).
    """
    data_dirs = [cluster.config.data_dir / name for name in replicas]
    stop.wait(BURST_HEAD_START)
    looks = 0
    while True:
        looks += 1
        frozen = [n for n in replicas if cluster.is_running(n) and n not in cluster.paused]
        for name in frozen:
            cluster.pause(name)
        # Their children too (a forked snapshot writer): the power stops them at the same
        # instant. Left running, a writer finished its snapshot after the look, so the bytes
        # the look counted in flight were durable when the power went (CI, 2026-12-07: 101,301
        # bytes in flight, 0 lost).
        forked = cluster.children()
        children = [pid for name in frozen for pid in forked.get(name, [])]
        _signal_all(children, signal.SIGSTOP)
        _wait_stopped([cluster.pid(name) for name in frozen] + children, time.monotonic() + STOP_BOUND)
        in_flight = sum(not_yet_durable(root, data_dirs).values())
        if in_flight or time.monotonic() >= deadline or stop.is_set():
            break
        _signal_all(children, signal.SIGCONT)
        for name in frozen:
            cluster.resume(name)
        stop.wait(rng.uniform(*LOOK_INTERVAL))
    _signal_all(children, signal.SIGKILL)
    for name in cluster.names:
        cluster.kill(name)
    return looks, in_flight


def _signal_all(pids: list[int], number: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, number)
        except ProcessLookupError:
            pass


def _wait_stopped(pids: list[int], deadline: float) -> None:
    """Return once every process in `pids` is stopped (or gone), or at `deadline`."""
    while time.monotonic() < deadline and any(_state(pid) not in ("T", "t", "Z", None) for pid in pids):
        time.sleep(0.001)


def end_orphan(pid: int) -> None:
    """Let an orphaned snapshot writer finish (it exits on its own), SIGKILL it after a grace."""
    deadline = time.monotonic() + ORPHAN_GRACE
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


def _state(pid: int) -> str | None:
    """The process's state letter in /proc (R, S, D, T, Z...); None if it is gone."""
    try:
        return open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return None


def _alive(pid: int) -> bool:
    return _state(pid) not in ("Z", None)
