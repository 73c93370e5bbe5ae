"""Group commit (consensus/group_commit.py) on real SyncObj replicas in the simulation:
commands that arrive while a round is in flight share the next round, and a command
that arrives alone is sent at once. Counted in messages, never in time."""
from __future__ import annotations

import contextlib

from pysyncobj.syncobj import SyncObj

from bazar.consensus import patching
from tests.sim.harness import Simulation, entries
from tests.sim.test_follower_rules import settle


def rounds_with_entries(sim: Simulation, leader: str, follower: str) -> list[int]:
    """How many entries each append-entries message waiting on leader -> follower carries
    (heartbeats, which carry none, left out)."""
    waiting = sim.network.queues.get((leader, follower), [])
    counts = [len(m.message().get("entries", [])) for m in waiting
              if m.message().get("type") == "append_entries"]
    return [count for count in counts if count]


@contextlib.contextmanager
def pysyncobj_own_command_loop():
    """PySyncObj 0.3.17's own `_checkCommandsToApply`, to show what group commit changes."""
    ours = SyncObj.__dict__["_checkCommandsToApply"]
    SyncObj._checkCommandsToApply = patching.original(SyncObj, "_checkCommandsToApply")
    try:
        yield
    finally:
        SyncObj._checkCommandsToApply = ours


def one_in_flight_then_five(sim: Simulation) -> tuple[str, str, list[int]]:
    """One command is sent and, before any follower answers, five more are submitted and
    the leader ticks: return (leader, a follower, the entries each waiting round carries)."""
    leader = settle(sim)
    follower = next(name for name in sim.names if name != leader)
    sim.write(leader)
    sim.tick(leader)          # no time passes: no heartbeat is due
    sim.write(leader, count=5)
    sim.tick(leader)
    return leader, follower, rounds_with_entries(sim, leader, follower)


def test_commands_arriving_during_a_round_share_the_next_one():
    with Simulation() as sim:
        leader, follower, rounds = one_in_flight_then_five(sim)
        assert rounds == [1]   # the five wait in the leader's log while the first is in flight
        assert entries(sim.replicas[leader].obj)[-1][1] - sim.replicas[leader].obj.raftCommitIndex == 6
        sim.deliver_all()      # the first round is answered ...
        sim.tick(leader)       # ... and committed; the round announcing it carries the five
        assert rounds_with_entries(sim, leader, follower) == [5]
        end = entries(sim.replicas[leader].obj)[-1][1]
        assert sim.run_until(lambda: all(r.obj.raftLastApplied == end for r in sim.replicas.values()))
        assert len(sim.world.acknowledged) == 6


def test_pysyncobj_sends_one_round_per_command():
    with pysyncobj_own_command_loop(), Simulation() as sim:
        _, _, rounds = one_in_flight_then_five(sim)
        assert rounds == [1, 1, 1, 1, 1, 1]


def test_a_lone_command_is_sent_at_once():
    with Simulation() as sim:
        leader = settle(sim)
        for follower in sim.names:
            if follower != leader:
                sim.network.deliver_all_on((leader, follower))   # nothing waiting
        sim.write(leader)
        sim.tick(leader)
        assert all(rounds_with_entries(sim, leader, f) == [1] for f in sim.names if f != leader)


def waiting_appends(sim: Simulation, leader: str, follower: str) -> list[dict]:
    return [m.message() for m in sim.network.queues.get((leader, follower), [])
            if m.message().get("type") == "append_entries"]


def test_a_commit_is_announced_to_voting_followers_by_the_next_round_not_a_round_of_its_own():
    """PySyncObj sent a whole round after every commit only to carry the new commit index;
    voting followers now learn it from the next round, at the latest the next heartbeat."""
    with Simulation() as sim:
        leader = settle(sim)
        followers = [name for name in sim.names if name != leader]
        for follower in followers:
            sim.network.deliver_all_on((leader, follower))
        sim.write(leader)
        sim.tick(leader)                    # the round carrying the entry
        for follower in followers:
            sim.network.deliver_all_on((leader, follower))
            sim.tick(follower)              # appended, synced, acknowledged
            sim.network.deliver_all_on((follower, leader))
        sim.tick(leader)                    # committed and applied: the write is answered
        assert len(sim.world.acknowledged) == 1
        committed = sim.replicas[leader].obj.raftCommitIndex
        assert all(waiting_appends(sim, leader, f) == [] for f in followers)
        sim.clock.advance(sim.replicas[leader].obj._SyncObj__conf.appendEntriesPeriod + 0.001)
        sim.tick(leader)                    # the heartbeat carries the commit index
        for follower in followers:
            assert [m["commit_index"] for m in waiting_appends(sim, leader, follower)] == [committed]


def test_a_commit_reaches_a_non_voting_member_with_the_next_heartbeat_not_a_round_of_its_own():
    """A frontend's follower needs no round of its own either: the buyer's answer no longer
    waits for it (the frontend fences its cache at the purchase's index), so in a group with
    a non-voting member the commit index also rides the next heartbeat, stamped with the
    leader's real majority age (what the follower's in-touch rule counts from)."""
    from bazar.consensus.probing import MAJORITY_KEY
    from tests.sim.reads import FOLLOWER, ReadSimulation

    with ReadSimulation(size=3, payload=8) as sim:
        assert sim.run_until(lambda: sim.leader() is not None, seconds=10)
        leader = sim.leader()
        obj = sim.replicas[leader].obj
        sim.add_follower()
        sim.write(leader)
        assert sim.run_until(lambda: len(sim.acks) == 1
                             and sim.follower[0].raftLastApplied == obj.raftCommitIndex, seconds=5)
        voters = [name for name in sim.names if name != leader]
        for link in sim.network.links():
            sim.network.deliver_all_on(link)    # nothing waiting anywhere
        sim.clock.advance(0.001)
        sim.tick(leader)                        # (a heartbeat, if one is due, goes out now)
        for link in sim.network.links():
            sim.network.deliver_all_on(link)
        sim.write(leader)
        sim.tick(leader)                        # the round carrying the entry, to every member
        assert all(rounds_with_entries(sim, leader, v) == [1] for v in voters + [FOLLOWER])
        for member in voters + [FOLLOWER]:
            sim.network.deliver_all_on((leader, member))
        for voter in voters:
            sim.tick(voter)
            sim.network.deliver_all_on((voter, leader))
        heard = sim.clock.now
        sim.clock.advance(0.002)                # (less than a heartbeat period)
        sim.tick(leader)                        # committed and applied: the write is answered
        assert len(sim.acks) == 2
        assert waiting_appends(sim, leader, FOLLOWER) == []
        assert all(waiting_appends(sim, leader, v) == [] for v in voters)
        sim.clock.advance(obj._SyncObj__conf.appendEntriesPeriod)
        sim.tick(leader)                        # the heartbeat carries the commit index
        (message,) = waiting_appends(sim, leader, FOLLOWER)
        assert (message["entries"], message["commit_index"]) == ([], obj.raftCommitIndex)
        assert abs(message[MAJORITY_KEY] - (sim.clock.now - heard)) < 1e-6
