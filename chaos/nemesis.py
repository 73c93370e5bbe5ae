"""The nemesis: faults injected on a schedule derived from a seed.

A plan is a list of faults with start times and lengths, a quiet gap after
each. The plan (kinds, times, which group and role to hit) depends only on the
seed; which concrete node that is (the leader *at that moment*) is decided when
the fault starts. Every fault is healed at the end of its window, and
`heal_all()` undoes whatever is still in force.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import asdict, dataclass, field

from chaos.network import Firewall
from cluster.local import LocalCluster

log = logging.getLogger("bazar.chaos.nemesis")

FAULT_KINDS = ("kill", "pause", "partition-leader", "partition-halves", "restart-all")
NEEDS_FIREWALL = {"partition-leader", "partition-halves"}
FIRST_QUIET = 3.0
FAULT_LENGTH = (3.0, 6.0)
QUIET_LENGTH = (3.0, 5.0)


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
        length = rng.uniform(*FAULT_LENGTH)
        if t + length > duration - 1.0:
            break
        faults.append(PlannedFault(order.pop(), round(t, 2), round(length, 2),
                                   rng.choice(["catalog", "order"]), rng.choice(["leader", "follower"]),
                                   rng.randrange(1 << 30)))
        t += length + rng.uniform(*QUIET_LENGTH)
    return faults


class Nemesis:
    """Carries out a plan against a LocalCluster (and a Firewall for partitions)."""

    def __init__(self, cluster: LocalCluster, firewall: Firewall | None) -> None:
        self.cluster = cluster
        self.firewall = firewall
        self.current: FaultWindow | None = None
        self.windows: list[FaultWindow] = []
        self._stopped: set[str] = set()

    def run(self, faults: list[PlannedFault], t0: float, stop: threading.Event) -> list[FaultWindow]:
        """Inject each fault at its time (relative to monotonic `t0`); must run on the main thread,
        which started the cluster's processes (see LocalCluster)."""
        for fault in faults:
            if stop.wait(max(0.0, t0 + fault.start - time.monotonic())):
                break
            window = FaultWindow(fault.kind, round(time.monotonic() - t0, 3))
            self.current = window
            self.windows.append(window)
            try:
                window.targets = self._inject(fault)
            except Exception as exc:  # a fault that cannot be injected is reported, not fatal
                log.warning("could not inject %s: %s", fault.kind, exc)
                window.targets = [f"failed: {exc}"]
            log.info("t=%.1f %s %s", window.start, fault.kind, ",".join(window.targets))
            stop.wait(max(0.0, t0 + fault.start + fault.length - time.monotonic()))
            self.heal_all()
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

    # -- the faults -----------------------------------------------------------

    def _inject(self, fault: PlannedFault) -> list[str]:
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
