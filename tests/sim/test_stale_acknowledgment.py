"""An acknowledgment from an earlier term, counted in a later one (Raft, Figure 2: every
reply carries the replier's current term; a leader acts only on replies of its own term).

PySyncObj 0.3.17's append-entries reply (`next_node_idx`) carried no term, and its leader
counted every success it read. Five replicas: n1 leads term 1 and sends five entries to
one follower, whose acknowledgments are still on the wire when the link breaks. A leader
of term 2 replaces those entries in n1's log; n1 is elected again in term 3 and writes
new entries, which reach one more replica. Then the old acknowledgments arrive: the
leader counts the follower as holding its term-3 entries, where the follower holds the
term-1 ones, and commits with 2 of 5 copies. Once n1 and that other replica are gone,
the next leader has different entries at the committed indexes.
"""
from __future__ import annotations

import logging

import pytest

from tests.sim.harness import SafetyViolation, Simulation, entries, original_follower
from tests.sim.test_follower_rules import settle


def elect(sim: Simulation, name: str, seconds: float = 5.0) -> None:
    """Only `name`'s election timer runs: it stands for election and the others answer."""
    obj = sim.replicas[name].obj
    deadline = sim.clock.now + seconds
    while not obj._isLeader():
        assert sim.clock.now < deadline, f"{name} was not elected"
        sim.clock.advance(0.05)
        sim.tick(name)
        sim.deliver_all()
        sim.observe()


def regroup(sim: Simulation, *groups: set[str]) -> None:
    """Replicas talk only within their group (messages on a cut link become stragglers)."""
    sim.network.partition(*groups)
    sim.network.reconnect()


def match_index(sim: Simulation, leader: str, follower: str) -> int:
    obj = sim.replicas[leader].obj
    return next(index for node, index in obj._SyncObj__raftMatchIndex.items() if node.id == follower)


def acknowledgment_from_an_earlier_term(sim: Simulation) -> dict:
    """Drive the scenario of the module docstring; return what the next leader lost."""
    leader = settle(sim)
    follower, rival, witness, voter = sorted(n for n in sim.names if n != leader)
    obj = sim.replicas[leader].obj

    # Term 1: five entries reach the follower; its acknowledgments are cut off on the wire.
    regroup(sim, {leader, follower}, {rival, witness, voter})
    sim.write(leader, 5)
    sim.tick(leader)
    sim.network.deliver_all_on((leader, follower))
    regroup(sim, {leader}, {follower}, {rival, witness, voter})
    stale = [m for m in sim.network.stragglers if (m.src, m.dst) == (follower, leader)]
    # One acknowledgment per append round: five with PySyncObj's own command loop, one
    # covering all five with group commit (consensus/group_commit.py).
    assert stale and stale[-1].message()['next_node_idx'] == entries(obj)[-1][1] + 1

    # Term 2: the rival leads the other three, and its log replaces the leader's term-1 entries.
    elect(sim, rival)
    sim.write(rival, 1)
    regroup(sim, {leader, rival, witness, voter}, {follower})
    for _ in range(20):
        sim.step(0.02)
    assert entries(obj)[-1][2] == 2

    # Term 3: the old leader is elected again; its new entries reach the witness only.
    regroup(sim, {leader, witness, voter}, {rival}, {follower})
    elect(sim, leader)
    regroup(sim, {leader, witness}, {voter}, {rival}, {follower})
    sim.write(leader, 3)
    sim.tick(leader)
    sim.network.deliver_all_on((leader, witness))
    sim.network.deliver_all_on((witness, leader))
    term, commit_before = obj.raftCurrentTerm, obj.raftCommitIndex

    # The follower's term-1 acknowledgments arrive now.
    while any((m.src, m.dst) == (follower, leader) for m in sim.network.stragglers):
        sim.network.deliver_straggler(next(i for i, m in enumerate(sim.network.stragglers)
                                           if (m.src, m.dst) == (follower, leader)))
    sim.clock.advance(0.01)
    sim.tick(leader)
    sim.observe()
    outcome = {"term": term, "commit_before": commit_before, "commit_after": obj.raftCommitIndex,
               "follower_match": match_index(sim, leader, follower),
               "acknowledged": sorted(sim.world.acknowledged)}

    # The leader and the witness are lost; the other three elect a leader.
    sim.crash(leader)
    sim.crash(witness)
    sim.network.heal()
    sim.network.stragglers.clear()

    def new_leader_settled():
        name = sim.leader()
        if name is None or sim.replicas[name].obj.raftCurrentTerm <= term:
            return False
        new = sim.replicas[name].obj
        return new.raftLastApplied == entries(new)[-1][1]
    assert sim.run_until(new_leader_settled, seconds=10)
    outcome["lost"] = sim.lost_acknowledged(sim.leader())
    return outcome


def test_an_acknowledgment_from_an_earlier_term_is_not_counted():
    """Raft: a leader counts only replies of its current term; the follower's term-1
    acknowledgments neither raise its match index nor commit anything in term 3."""
    with Simulation(size=5, seed=1) as sim:
        outcome = acknowledgment_from_an_earlier_term(sim)
        assert outcome["follower_match"] == 0                     # nothing of term 3 counted
        assert outcome["commit_after"] == outcome["commit_before"]  # 2 of 5 copies: not committed
        assert outcome["lost"] == []
        assert sim.world.violations == []


def test_pysyncobj_own_leader_counts_an_acknowledgment_from_an_earlier_term():
    """The failure the correction fixes: two acknowledged writes are lost, and the next
    leader holds different entries at indexes already committed."""
    with original_follower(), Simulation(size=5, seed=1) as sim:
        sim.world.fail = sim.world.violations.append
        outcome = acknowledgment_from_an_earlier_term(sim)
    assert outcome["commit_after"] > outcome["commit_before"]
    assert len(outcome["lost"]) == 2
    assert any("has a different entry at committed index" in v for v in sim.world.violations)


# ------------------------------------------------- the reply's term, message by message

def leader_and_follower(sim: Simulation) -> tuple[str, str]:
    leader = settle(sim)
    return leader, sorted(n for n in sim.names if n != leader)[0]


def test_every_append_reply_carries_the_repliers_term_and_is_on_disk_first():
    with Simulation(seed=2) as sim:
        leader, follower = leader_and_follower(sim)
        journal = sim.replicas[follower].obj._SyncObj__raftLog
        sim.write(leader, 1)
        sim.tick(leader)
        sim.network.deliver_all_on((leader, follower))
        reply = sim.network.queues[(follower, leader)][-1].message()
        assert reply['type'] == 'next_node_idx' and reply['success']
        assert reply['term'] == sim.replicas[follower].obj.raftCurrentTerm
        assert not journal._pending                  # written (and fsynced, with fsync on) first


def test_a_reply_from_a_newer_term_makes_the_leader_adopt_it_and_step_down():
    with Simulation(seed=2) as sim:
        leader, follower = leader_and_follower(sim)
        obj = sim.replicas[leader].obj
        newer = obj.raftCurrentTerm + 3
        sim.network.inject(follower, leader, {'type': 'next_node_idx', 'next_node_idx': 1,
                                              'reset': False, 'success': False, 'term': newer})
        sim.network.deliver((follower, leader))
        assert not obj._isLeader()
        assert obj.raftCurrentTerm == newer


@pytest.mark.parametrize("term", [None, "older"], ids=["without-term", "older-term"])
def test_a_reply_without_a_term_or_of_an_older_term_is_ignored(term, caplog):
    """A reply without a term (an older Bazar, during a rolling upgrade) may answer any
    term: it is neither counted as an acknowledgment nor as a sign of life."""
    with Simulation(seed=2) as sim, caplog.at_level(logging.WARNING, logger="bazar.raft"):
        leader, follower = leader_and_follower(sim)
        obj = sim.replicas[leader].obj
        node = next(n for n in obj._SyncObj__raftMatchIndex if n.id == follower)
        before = (obj._SyncObj__raftMatchIndex[node], obj._SyncObj__raftNextIndex[node],
                  obj._SyncObj__lastResponseTime[node])
        reply = {'type': 'next_node_idx', 'next_node_idx': 10 ** 6, 'reset': True, 'success': True}
        if term == "older":
            reply['term'] = obj.raftCurrentTerm - 1
        sim.network.inject(follower, leader, reply)
        sim.clock.advance(0.01)
        sim.network.deliver((follower, leader))
        assert obj._isLeader()
        assert (obj._SyncObj__raftMatchIndex[node], obj._SyncObj__raftNextIndex[node],
                obj._SyncObj__lastResponseTime[node]) == before
        if term is None:
            assert "without a term" in caplog.text
