"""A snapshot older than what the follower has committed (Raft §7: a snapshot describes a
prefix of the log; a follower whose log already covers it must not go back to it).

Three replicas; the third is partitioned away. The follower has applied and compacted
up to index 62, the leader's last snapshot ends at 32 (it compacts less often). A stale
"start again from index 2" reply reaches the leader, which moved the follower's next
index back to 2 and sent it its snapshot. PySyncObj's follower, and Bazar's until now,
did not hold the snapshot's last entry (compacted away) and so replaced its state and
log with the snapshot's: writes 33 to 62, acknowledged as held by the leader and the
follower, were held by the leader alone. Two corrections:

- the leader never moves a follower's next index to or below its match index on a
  failure reply (a stale reset): it stays at match index + 1;
- a follower never installs a snapshot whose last index is at or below its commit or
  applied index: it acknowledges its commit index instead, which its log really backs.
"""
from __future__ import annotations

from tests.sim.harness import Simulation, entries, original_follower
from tests.sim.test_follower_rules import last_index, settle


def holders(sim: Simulation, command: str) -> int:
    """How many live replicas hold `command`: applied, or in their log (not applied yet)."""
    count = 0
    for replica in sim.replicas.values():
        applied = {c for _, c in replica.recorder.applied}
        logged = any(command.encode() in entry[0] for entry in entries(replica.obj))
        count += command in applied or logged
    return count


def follower_ahead_of_the_leaders_snapshot(sim: Simulation) -> tuple[str, str]:
    """The leader's snapshot ends near index 32; the follower has applied and compacted past 62."""
    leader = settle(sim)
    follower, behind = sorted(n for n in sim.names if n != leader)
    sim.network.partition({leader, follower}, {behind})
    caught_up = lambda: sim.replicas[follower].obj.raftLastApplied == last_index(sim, leader)  # noqa: E731
    sim.write(leader, 30)
    assert sim.run_until(caught_up, seconds=5)
    sim.run_until(lambda: False, seconds=0.5)                # both compact
    sim.replicas[leader].obj.conf.logCompactionMinEntries = 10 ** 9  # the leader no more
    sim.write(leader, 30)
    assert sim.run_until(caught_up, seconds=5)
    sim.run_until(lambda: False, seconds=0.5)                # the follower compacts again
    snapshot_end = entries(sim.replicas[leader].obj)[1][1]
    assert entries(sim.replicas[follower].obj)[0][1] > snapshot_end
    return leader, follower


def deliver_the_snapshot(sim: Simulation, leader: str, follower: str) -> bool:
    """The leader's next round; only a snapshot, if it sends one, reaches the follower.
    Returns whether it sent one."""
    sim.clock.advance(0.1)
    sim.tick(leader)
    queue = sim.network.queues.get((leader, follower), [])
    sent = bool(queue) and 'serialized' in queue[0].message()
    while queue and 'serialized' in queue[0].message():
        sim.network.deliver((leader, follower))
    sim.observe()
    return sent


def stale_reset(sim: Simulation) -> dict:
    leader, follower = follower_ahead_of_the_leaders_snapshot(sim)
    obj = sim.replicas[follower].obj
    applied_before = obj.raftLastApplied
    sim.network.inject(follower, leader, {'type': 'next_node_idx', 'next_node_idx': 2,
                                          'reset': True, 'success': False, 'term': obj.raftCurrentTerm})
    sim.network.deliver_all_on((follower, leader))
    sent = deliver_the_snapshot(sim, leader, follower)
    outcome = {"sent": sent, "applied_before": applied_before, "applied_after": obj.raftLastApplied,
               "acknowledged": len(sim.world.acknowledged),
               "under_held": sorted(c for c in sim.world.acknowledged if holders(sim, c) < 2)}
    sim.crash(leader)
    sim.network.heal()
    sim.run_until(lambda: False, seconds=5)
    new_leader = sim.leader()
    outcome["new_leader"] = new_leader
    outcome["lost_by_every_live_replica"] = sorted(
        set.intersection(*(set(sim.lost_acknowledged(name)) for name in sim.replicas)))
    return outcome


def test_a_stale_reset_never_sends_a_follower_back_below_its_match_index():
    """Raft: the next index only backs off past entries not known to match; the match
    index says the follower holds everything up to it. With every acknowledged write on two
    of three replicas, the follower wins the next election and loses nothing."""
    with Simulation(seed=3, compaction_entries=20) as sim:
        outcome = stale_reset(sim)
        assert outcome["acknowledged"] == 60
        assert outcome["under_held"] == []
        assert outcome["new_leader"] is not None
        assert outcome["lost_by_every_live_replica"] == []
        assert not outcome["sent"]                            # appends, not the old snapshot
        assert outcome["applied_after"] == outcome["applied_before"]
        assert sim.world.violations == []


def test_pysyncobj_own_follower_installs_a_snapshot_older_than_its_state():
    with original_follower(), Simulation(seed=3, compaction_entries=20) as sim:
        sim.world.fail = sim.world.violations.append
        outcome = stale_reset(sim)
    assert outcome["sent"]
    assert outcome["applied_after"] < outcome["applied_before"]   # its state went back
    assert len(outcome["under_held"]) >= 25                       # on the leader alone
    assert len(outcome["lost_by_every_live_replica"]) >= 25       # gone with it


def test_a_follower_never_installs_a_snapshot_at_or_below_its_commit_index():
    """Raft §7 (and Figure 2's rule that a committed entry never changes): whatever made the
    leader send it, a snapshot the follower's state already covers is acknowledged up to
    the follower's commit index and not installed; its files still agree after a restart."""
    with Simulation(seed=3, compaction_entries=20) as sim:
        leader, follower = follower_ahead_of_the_leaders_snapshot(sim)
        obj = sim.replicas[follower].obj
        before = (obj.raftLastApplied, obj.raftCommitIndex, entries(obj))
        leader_obj = sim.replicas[leader].obj
        node = next(n for n in leader_obj._SyncObj__raftNextIndex if n.id == follower)
        leader_obj._SyncObj__raftNextIndex[node] = 2        # a leader that sends its old snapshot
        assert deliver_the_snapshot(sim, leader, follower)
        assert (obj.raftLastApplied, obj.raftCommitIndex, entries(obj)) == before
        reply = [m.message() for m in sim.network.queues[(follower, leader)]][-1]
        assert (reply['success'], reply['next_node_idx']) == (True, before[1] + 1)
        applied = list(sim.replicas[follower].recorder.applied)
        sim.crash(follower)                                  # its snapshot file is its own again
        sim.restart(follower)
        restarted = sim.replicas[follower]
        sim.tick(follower)
        assert restarted.recorder.applied == applied[:len(restarted.recorder.applied)]
        assert entries(restarted.obj)[-1] == before[2][-1]
        sim.crash(leader)
        sim.network.heal()
        sim.run_until(lambda: False, seconds=5)
        assert sim.leader() is not None
        assert sim.lost_acknowledged(sim.leader()) == []
        assert sim.world.violations == []
