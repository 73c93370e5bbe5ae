"""Raft's rule against disruptive candidates (thesis §4.2.3, raft_fixes.ignores_vote_request)
and its exception for leadership transfer (§3.10), on real replicas in the simulator.

A follower that heard from its leader within the minimum election timeout ignores a vote
request of a newer term. The schedules that made the rule necessary (a removed replica, or
one whose addition never committed, campaigning without end through the members that
still count it) are named in test_found_schedules.py; here, what the rule must not break.
"""
from __future__ import annotations

import pytest

from bazar.consensus import raft_fixes
from tests.sim.harness import Simulation


def _transfer(sim: Simulation) -> tuple[str, str, float]:
    """Have the leader of a settled group hand leadership to a follower; return (old leader,
    target, virtual seconds until the target leads)."""
    assert sim.run_until(lambda: sim.leader() is not None, seconds=10)
    leader = sim.leader()
    sim.write(leader, 3)
    assert sim.run_until(lambda: len(sim.world.acknowledged) == 3, seconds=5)
    sim.run_until(lambda: False, seconds=0.3)   # every follower has the entries and heard the leader
    obj = sim.replicas[leader].obj
    target = sorted(obj.otherNodes, key=lambda node: node.id)[0]
    started = sim.clock.now
    obj.transferLeadership(target)
    sim.run_until(lambda: sim.leader() == target.id, seconds=5)
    return leader, target.id, sim.clock.now - started


def test_a_transfer_in_a_group_of_five_is_heard_at_once():
    """The target's vote requests say the leader asked for the election, so followers that
    heard the leader a moment ago vote at once: in a group of five the target needs two of
    them, which the rule alone would have made wait out their election timeout."""
    with Simulation(size=5) as sim:
        minimum = sim.replicas[sim.names[0]].obj.conf.raftMinTimeout
        leader, target, took = _transfer(sim)
        assert sim.leader() == target != leader
        assert took < minimum, f"the transfer took {took:.3f} s of virtual time (minimum election timeout {minimum} s)"


def test_without_the_transfer_mark_the_rule_holds_a_transfer_back(monkeypatch):
    """What the mark is for: with it left out, the followers ignore the target's requests."""
    monkeypatch.setattr(raft_fixes._SyncObj, "mark_transfer_elections", lambda self: None)
    with Simulation(size=5) as sim:
        minimum = sim.replicas[sim.names[0]].obj.conf.raftMinTimeout
        _, target, took = _transfer(sim)
        assert sim.leader() != target or took >= minimum


def _cut_from_the_leader(sim: Simulation, seconds: float = 4.0) -> tuple[str, int, list[str]]:
    """Settle the group, then cut one follower off from the leader alone (it still reaches
    every other replica) for `seconds` of virtual time, writing at the leader all along.
    Returns (leader, its term, the leaders seen while the link was down)."""
    assert sim.run_until(lambda: sim.leader() is not None, seconds=10)
    leader = sim.leader()
    sim.write(leader, 3)
    assert sim.run_until(lambda: len(sim.world.acknowledged) == 3, seconds=5)
    term = sim.replicas[leader].obj.raftCurrentTerm
    follower = sorted(n for n in sim.names if n != leader)[0]
    sim.network.cut_link(leader, follower)
    seen = []
    deadline = sim.clock.now + seconds
    while sim.clock.now < deadline:
        if sim.leader() is not None and sim.leader() not in seen[-1:]:
            seen.append(sim.leader())
        if sim.leader() is not None and round(sim.clock.now * 100) % 20 == 0:
            sim.write(sim.leader(), 1)
        sim.step(0.01)
    return leader, term, seen


@pytest.mark.parametrize("size", [3, 5])
def test_a_replica_cut_off_from_the_leader_alone_cannot_depose_it(size):
    """The disruption §4.2.3 is about, in its simplest form: a follower that cannot hear the
    leader (one link down) times out and asks the others for votes in ever newer terms. The
    others still hear the leader every heartbeat, so they ignore it: the leader keeps its
    term and goes on committing. PySyncObj's rule had them adopt each term, and the leader
    stepped down at the next reply of each, again and again."""
    with Simulation(size=size) as sim:
        leader, term, seen = _cut_from_the_leader(sim)
        assert seen == [leader], f"leadership changed while one link was down: {seen}"
        assert sim.replicas[leader].obj.raftCurrentTerm == term
        committed = len(sim.world.acknowledged)
        assert committed > 3 + 10, f"only {committed} writes acknowledged in 4 s"
        sim.network.heal()
        assert sim.run_until(sim.converged, seconds=10)
        assert all(sim.lost_acknowledged(name) == [] for name in sim.names)
