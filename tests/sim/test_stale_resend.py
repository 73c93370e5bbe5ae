"""The stale re-send that lost committed writes (issue "Log safety", finding 1), replayed
step by step on real SyncObj replicas, with PySyncObj's own follower code and with Bazar's.

With appendEntriesUseBatch off (Bazar's setting) the leader sends every write at
once. Each acknowledgment it reads sets the follower's next index back to the
acknowledged point, and the leader re-sends from there, at most 64 KiB at a time.
PySyncObj's follower then deleted everything after the matching entry and kept
only those 64 KiB, though it had already acknowledged the rest; the leader, which
never lowers a match index, counted the rest as held by the follower and
committed it. If the leader dies now, the follower's log lacks committed entries
and the third replica, partitioned away, lacks them too.
"""
from __future__ import annotations

from tests.sim.harness import Simulation, entries, original_follower

WRITES = 600
PAYLOAD = 170           # a journal entry of ~210 bytes, about a Bazar purchase command
ACKS_READ_FIRST = 10    # acknowledgments the leader reads before it re-sends


def stale_resend(sim: Simulation) -> dict:
    """Drive the scenario; return what the surviving leader's replica lost, and more."""
    assert sim.run_until(lambda: sim.leader() is not None, seconds=5)
    leader = sim.leader()
    follower, behind = sorted(n for n in sim.names if n != leader)
    sim.network.partition({leader, follower}, {behind})        # the third replica falls behind

    sim.write(leader, WRITES)
    sim.tick(leader)                                            # one append message per write
    sim.network.deliver_all_on((leader, follower))              # the follower stores and acks all
    sim.observe()
    for _ in range(ACKS_READ_FIRST):                            # the leader reads a few acks ...
        sim.network.deliver((follower, leader))
    sim.tick(leader)                                            # ... and re-sends from there
    sim.network.deliver((leader, follower))                     # the first 64 KiB arrive
    sim.observe()
    held_after_resend = entries(sim.replicas[follower].obj)[-1][1]
    sim.network.deliver_all_on((follower, leader))              # the remaining (stale) acks
    sim.tick(leader)                                            # commit: clients are answered
    sim.observe()
    acknowledged = len(sim.world.acknowledged)

    sim.crash(leader)                                           # before the rest arrives
    sim.network.heal()
    assert sim.run_until(lambda: sim.leader() is not None, seconds=10)
    new_leader = sim.leader()
    survivor = sim.replicas[new_leader].obj
    assert sim.run_until(lambda: survivor.raftLastApplied == entries(survivor)[-1][1], seconds=5)
    return {"leader": leader, "follower": follower, "new_leader": new_leader,
            "acknowledged": acknowledged, "held_after_resend": held_after_resend,
            "lost": sim.lost_acknowledged(new_leader)}


def test_pysyncobj_own_follower_loses_acknowledged_writes_on_a_stale_resend():
    """The failure the corrections fix: PySyncObj 0.3.17 loses most of 600 acknowledged writes."""
    with original_follower(), Simulation(seed=7, payload=PAYLOAD) as sim:
        sim.world.fail = sim.world.violations.append    # record what breaks, and carry on
        outcome = stale_resend(sim)
    assert outcome["acknowledged"] == WRITES
    assert outcome["held_after_resend"] < WRITES        # the follower cut its log ...
    assert len(outcome["lost"]) > WRITES // 4           # ... and the writes are gone,
    assert any(v.startswith(f"leader {outcome['new_leader']} ") for v in sim.world.violations)  # seen
    print(f"unpatched: {len(outcome['lost'])} of {WRITES} acknowledged writes lost")


def test_stale_resend_loses_no_acknowledged_write():
    """With Bazar's corrections: 0 of 600 lost, every safety property checked at every step,
    and once the old leader is back every replica holds the same state."""
    with Simulation(seed=7, payload=PAYLOAD) as sim:
        outcome = stale_resend(sim)
        assert outcome["acknowledged"] == WRITES
        assert outcome["held_after_resend"] == WRITES + 2   # skipped, not cut (+ 2 no-ops)
        assert outcome["lost"] == []
        sim.restart(outcome["leader"])
        assert sim.run_until(sim.converged, seconds=10)
        assert all(sim.lost_acknowledged(name) == [] for name in sim.names)
        assert len({r.recorder.digest() for r in sim.replicas.values()}) == 1
        assert sim.world.violations == []
