"""The simulator's snapshot writer (harness `SnapshotWriter`) does only what a real forked
writer can: in particular, `snapshot.stop_own_writer` (SIGKILL, then a blocking waitpid)
ends it for good, so it never renames its older snapshot into place afterwards."""
from __future__ import annotations

from bazar.consensus import snapshot
from tests.sim.harness import Simulation


def a_running_writer(sim: Simulation):
    """Write until some replica has forked a snapshot writer that is still running."""
    assert sim.run_until(lambda: sim.leader() is not None, seconds=10)
    sim.write(sim.leader(), 30)
    for _ in range(500):
        running = sim.running_writers()
        if running:
            return running[0]
        sim.clock.advance(0.01)
        sim.tick_all()   # no `step`: it would let every writer finish
        sim.deliver_all()
    raise AssertionError("no replica forked a snapshot writer")


def test_stopping_its_own_writer_kills_it_for_good():
    with Simulation(size=3, compaction_entries=10, payload=64, fork_writer=True) as sim:
        writer = a_running_writer(sim)
        serializer = sim.replicas[writer.owner].obj._SyncObj__serializer
        snapshot.stop_own_writer(serializer)
        assert writer.status == 1, "the killed writer is still running"
        assert sim.running_writers(writer.owner) == []
        assert not sim.finish_writer(0)


def test_a_blocking_waitpid_waits_for_the_writer_to_end():
    with Simulation(size=3, compaction_entries=10, payload=64, fork_writer=True) as sim:
        writer = a_running_writer(sim)
        assert snapshot.os.waitpid(writer.pid, 0) == (writer.pid, 0)
        assert writer.status == 0
