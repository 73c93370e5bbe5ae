"""Reads in the simulator (tests/sim/reads.py): Bazar's own read index and in-touch rule,
running in every simulated replica, checked against what was acknowledged.

Each rule is also broken on purpose (`reads.MUTATIONS`) to show that the checks fail
without it: in a scenario written out here, and in generated schedules (the ones CI
plays), which must find the broken rule by themselves.
"""
from __future__ import annotations

import contextlib

import pytest

from tests.sim.harness import SafetyViolation
from tests.sim.mutation import hunt
from tests.sim.reads import BOUND, FOLLOWER, MUTATIONS, ReadSimulation


def _cut_off_leader(mutation: str | None, size: int, with_follower: int) -> dict:
    """The leader is cut off with `with_follower` of its followers and the non-voting
    follower; the other side elects a leader and acknowledges a write; meanwhile reads are
    queued at the old leader and local reads served on its side, every 10 ms, for 3 s."""
    context = MUTATIONS[mutation]() if mutation else contextlib.nullcontext()
    with context, ReadSimulation(size=size, payload=8) as sim:
        assert sim.run_until(lambda: sim.leader() is not None, seconds=10)
        sim.add_follower()
        old = sim.leader()
        sim.write(old, 2)
        assert sim.run_until(lambda: len(sim.acks) == 2 and sim.members[FOLLOWER].in_touch(BOUND))
        others = sorted(set(sim.names) - {old})
        side = {old, *others[:with_follower]}
        rest = set(sim.names) - side
        sim.network.partition(side, rest)
        assert sim.run_until(lambda: any(sim.replicas[n].obj._isLeader() for n in rest), seconds=2)
        new = next(n for n in rest if sim.replicas[n].obj._isLeader())
        sim.write(new, 1)
        assert sim.run_until(lambda: len(sim.acks) == 3, seconds=1)
        assert sim.replicas[old].obj._isLeader(), "the old leader has not noticed yet"
        for _ in range(300):
            sim.read(old)
            for name in sorted(side - {old}) + [FOLLOWER]:
                sim.local_read(name)
            sim.step(0.01)
        return dict(sim.stats)


def test_a_deposed_leader_serves_no_stale_read_index_read():
    stats = _cut_off_leader(None, size=3, with_follower=0)
    assert stats["read index"] == 0 and stats["refused"] > 0


def test_without_step_3_a_deposed_leader_serves_a_stale_read_and_the_check_fails():
    with pytest.raises(SafetyViolation, match="read-index read at .* misses write"):
        _cut_off_leader("read_index_without_step_3", size=3, with_follower=0)


@pytest.mark.parametrize("size,with_follower", [(3, 0), (5, 1)])
def test_followers_cut_off_with_a_deposed_leader_serve_local_reads_only_within_the_bound(size, with_follower):
    stats = _cut_off_leader(None, size=size, with_follower=with_follower)
    assert stats["local"] > 0 and stats["not in touch"] > 0


@pytest.mark.parametrize("size,with_follower", [(3, 0), (5, 1)])
def test_counting_in_touch_from_the_last_heartbeat_fails_the_bound_check(size, with_follower):
    with pytest.raises(SafetyViolation, match="local read at .* misses write"):
        _cut_off_leader("in_touch_from_last_heard", size=size, with_follower=with_follower)


def test_an_answer_holding_an_entry_that_is_not_committed_fails_the_final_check():
    with ReadSimulation(size=3, payload=8) as sim:
        assert sim.run_until(lambda: sim.leader() is not None, seconds=10)
        sim.write(sim.leader(), 2)
        assert sim.run_until(lambda: len(sim.acks) == 2 and sim.converged())
        applied = list(sim.replicas[sim.leader()].recorder.applied)
        sim.answers.append(("n1", "local read", sim.clock.now, applied + [(applied[-1][0] + 1, "never")]))
        with pytest.raises(SafetyViolation, match="saw .*never.* not the committed state's entry"):
            sim.finish_reads()


# Broken rule -> schedules of seed 1 within which generated schedules catch it (measured:
# in_touch_from_last_heard by the 3rd, read_index_without_step_3 by the 10th; of the first
# 400 schedules, 52 and 67 fail), with room to spare.
CAUGHT_WITHIN = {"in_touch_from_last_heard": 40, "read_index_without_step_3": 40}


@pytest.mark.parametrize("name", sorted(CAUGHT_WITHIN))
def test_generated_schedules_catch_a_broken_read_rule(name):
    result = hunt(name, seed=1, schedules=CAUGHT_WITHIN[name], seconds=float("inf"))
    print(f"\n{name}: caught after {result['schedules']} schedules ({result['seconds']:.1f} s), "
          f"schedule {result['seed']}: {result['failure']}")
    assert result["caught"], f"{result['schedules']} schedules passed with {name}"


def test_a_majority_stamp_vouches_only_for_the_commit_index_of_its_own_message():
    """A follower is in touch from the majority instant its leader stamped on a message,
    once it has applied the commit index *that* message announced. A message the leader
    sent earlier (before its stamp, with a lower commit index) and delivered after the
    stamped one, as happens across a reconnect, must not lower the bar: here the follower
    lacks three writes acknowledged over a second ago (found by generated schedule
    1000105: a local read at n5 missed a write acknowledged 3 s earlier)."""
    from pysyncobj.syncobj import _RAFT_STATE

    from bazar.consensus.probing import MAJORITY_KEY
    from tests.sim.harness import entries

    with ReadSimulation(size=3, payload=8) as sim:
        assert sim.run_until(lambda: sim.leader() is not None, seconds=10)
        leader = sim.leader()
        lagging, other = sorted(set(sim.names) - {leader})
        sim.write(leader, 2)
        assert sim.run_until(lambda: len(sim.acks) == 2 and sim.members[lagging].in_touch(BOUND))
        obj, behind = sim.replicas[leader].obj, entries(sim.replicas[lagging].obj)[-1]
        # `lagging` is paused (never ticks, gets nothing) while the others commit 3 writes
        # and go on for 1.5 s.
        sim.write(leader, 3)
        for _ in range(150):
            sim.clock.advance(0.01)
            for name in (leader, other):
                sim.tick(name)
            for link in sim.network.links():
                if lagging in link:
                    sim.network.drop(link)
                else:
                    sim.network.deliver_all_on(link)
        assert len(sim.acks) == 5 and obj._SyncObj__raftState == _RAFT_STATE.LEADER
        last = entries(obj)[-1]
        stamped = {"type": "append_entries", "term": obj.raftCurrentTerm, "commit_index": obj.raftCommitIndex,
                   "entries": [], "prevLogIdx": last[1], "prevLogTerm": last[2], MAJORITY_KEY: 0.0}
        earlier = {"type": "append_entries", "term": obj.raftCurrentTerm, "commit_index": behind[1],
                   "entries": [], "prevLogIdx": behind[1], "prevLogTerm": behind[2]}
        sim.network.inject(leader, lagging, stamped)
        sim.network.inject(leader, lagging, earlier)
        sim.network.deliver_all_on((leader, lagging))
        sim.tick(lagging)
        assert sim.replicas[lagging].obj.raftLastApplied == behind[1]   # it lacks the three
        assert not sim.members[lagging].in_touch(BOUND)
