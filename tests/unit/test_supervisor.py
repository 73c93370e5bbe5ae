"""The restart policy of `bazar up` (local/cluster.py Supervisor), on a clock the test moves."""
from __future__ import annotations

import pytest

from bazar.local.cluster import GaveUp, Supervisor


class FakeProcess:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode = None

    def poll(self):
        return self.returncode


class FakeCluster:
    """The part of LocalCluster a Supervisor uses: processes, start_process, pid, log_path."""

    def __init__(self, *names: str) -> None:
        self.pids = iter(range(100, 10_000))
        self.processes = {name: FakeProcess(next(self.pids)) for name in names}
        self.starts: list[str] = []

    def start_process(self, name: str) -> None:
        self.processes[name] = FakeProcess(next(self.pids))
        self.starts.append(name)

    def pid(self, name: str) -> int:
        return self.processes[name].pid

    def log_path(self, name: str) -> str:
        return f"{name}.log"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def supervised(*names):
    cluster, clock, said = FakeCluster(*names), Clock(), []
    return cluster, clock, said, Supervisor(cluster, said.append, clock=clock)


def crash(cluster: FakeCluster, name: str) -> None:
    cluster.processes[name].returncode = -9


def test_a_child_that_dies_at_start_is_restarted_after_a_doubling_back_off_then_given_up_on():
    cluster, clock, said, supervisor = supervised("catalog1", "order1")
    delays = []
    for _ in range(4):
        crash(cluster, "catalog1")
        supervisor.check()
        delays.append(said[-1].split("restarting it in ")[1])
        starts = len(cluster.starts)
        clock.now += float(delays[-1].rstrip(" s")) - 0.01
        supervisor.check()
        assert len(cluster.starts) == starts, "restarted before its back-off was over"
        clock.now += 0.01
        supervisor.check()
        assert cluster.starts[-1] == "catalog1" and said[-1].startswith("catalog1 restarted")
        clock.now += 1.0  # dies a second after each start
    assert delays == ["0.5 s", "1 s", "2 s", "4 s"]
    crash(cluster, "catalog1")
    with pytest.raises(GaveUp, match="catalog1 died within 10 s of starting 5 times in a row"):
        supervisor.check()
    assert cluster.processes["order1"].poll() is None and "order1" not in cluster.starts


def test_a_child_that_ran_a_while_before_crashing_is_restarted_at_the_first_delay_again():
    cluster, clock, said, supervisor = supervised("catalog1")
    for _ in range(3):
        crash(cluster, "catalog1")
        supervisor.check()
        clock.now += 5.0
        supervisor.check()
    assert said[-2].endswith("restarting it in 2 s")
    clock.now += 60.0  # then it runs for a minute
    crash(cluster, "catalog1")
    supervisor.check()
    assert said[-1].endswith("restarting it in 0.5 s")
