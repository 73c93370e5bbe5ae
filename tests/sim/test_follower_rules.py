"""Each of Bazar's follower corrections (consensus/raft_fixes.py), on real SyncObj replicas
in the simulation: the scenario that loses data with PySyncObj's own code, where there is
one, and the rule that now holds."""
from __future__ import annotations

import logging

import pysyncobj.syncobj as syncobj_module
import pytest

from bazar.consensus import journal as journal_module
from bazar.consensus import patching
from bazar.consensus.journal import DurableJournal
from bazar.consensus.raft_fixes import missing_committed_up_to
from tests.sim.harness import Simulation, entries, original_follower

PYSYNCOBJ_JOURNAL = patching.original(syncobj_module, "createJournal")


def settle(sim: Simulation, seconds: float = 5) -> str:
    """Run until a leader has committed and every live replica applied its whole log."""
    def settled():
        leader = sim.leader()
        if leader is None:
            return False
        end = entries(sim.replicas[leader].obj)[-1][1]
        return all(r.obj.raftLastApplied == end for r in sim.replicas.values())
    assert sim.run_until(settled, seconds=seconds)
    return sim.leader()


def last_index(sim: Simulation, name: str) -> int:
    return entries(sim.replicas[name].obj)[-1][1]


# --------------------------------------------------------------- install snapshot

def stale_reset_then_snapshot(sim: Simulation, stale_reset: bool = True) -> dict:
    """A follower's old "start again from index 2" reply arrives late, after it acknowledged
    30 more writes: the leader sends it its snapshot, which is older than the follower's log.

    Bazar's leader no longer moves a next index below the match index on such a reply
    (tests/sim/test_old_snapshot.py), and Bazar's follower does not install a snapshot it
    has committed already. With `stale_reset` False, what Raft §7 is about is shown
    instead: the leader commits the 30 writes and compacts its log, the new commit index
    never reaches the follower, and the leader's next index for the follower is set to 2
    directly, so its snapshot ends beyond the follower's commit index, inside its log."""
    leader = settle(sim)
    follower, behind = sorted(n for n in sim.names if n != leader)
    sim.network.partition({leader, follower}, {behind})
    sim.write(leader, 60)
    settle_pair = lambda: sim.replicas[follower].obj.raftLastApplied == last_index(sim, leader)  # noqa: E731
    assert sim.run_until(settle_pair, seconds=5)
    sim.run_until(lambda: False, seconds=0.5)                 # the leader compacts its log
    snapshot_end = entries(sim.replicas[leader].obj)[1][1]
    assert snapshot_end > 2

    sim.write(leader, 25)
    sim.tick(leader)
    sim.write(leader, 5)      # while the 25 are in flight: group commit holds them back ...
    sim.tick(leader)
    sim.clock.advance(0.06)
    sim.tick(leader)          # ... until the next heartbeat carries them
    sim.network.deliver_all_on((leader, follower))            # stored, acknowledged
    if stale_reset:
        sim.network.inject(follower, leader, {'type': 'next_node_idx', 'next_node_idx': 2,
                                              'reset': True, 'success': False})
    if stale_reset:
        sim.network.deliver_all_on((follower, leader))        # acks, then the stale reply
    else:
        acks = sim.network.queues[(follower, leader)]
        while len(acks) > 1:                                  # the ack of the last 5 is late
            sim.network.deliver((follower, leader))
        leader_obj = sim.replicas[leader].obj
        for _ in range(2):                                    # commits, then compacts its log
            sim.clock.advance(0.01)
            sim.tick(leader)
        for link in ((leader, follower), (follower, leader)):  # the new commit index, and
            while sim.network.queues.get(link):               # the late acks, are lost
                sim.network.drop(link)
        snapshot_end = entries(leader_obj)[1][1]
        assert snapshot_end > sim.replicas[follower].obj.raftCommitIndex
        next_index = leader_obj._SyncObj__raftNextIndex
        next_index[next(node for node in next_index if node.id == follower)] = 2
        sim.clock.advance(0.1)
    sim.tick(leader)                                          # commits; sends the snapshot
    queue = sim.network.queues[(leader, follower)]
    while queue and 'serialized' in queue[0].message():       # the snapshot arrives; the
        sim.network.deliver((leader, follower))               # entries sent after it do not
    sim.observe()
    held = last_index(sim, follower)
    acknowledged = len(sim.world.acknowledged)
    sim.crash(leader)
    sim.network.heal()
    new_leader = settle(sim, seconds=10)
    return {"snapshot_end": snapshot_end, "held": held, "acknowledged": acknowledged,
            "lost": sim.lost_acknowledged(new_leader)}


def test_pysyncobj_own_snapshot_install_discards_acknowledged_entries():
    with original_follower(), Simulation(seed=3, compaction_entries=20) as sim:
        sim.world.fail = sim.world.violations.append
        outcome = stale_reset_then_snapshot(sim)
    assert outcome["held"] == outcome["snapshot_end"]        # the journal was cleared
    assert len(outcome["lost"]) >= 25                        # acknowledged writes lost
    assert sim.world.violations


def test_a_snapshot_older_than_the_log_keeps_the_entries_after_it():
    """Raft §7: the follower holds the snapshot's last entry, so it keeps what follows."""
    with Simulation(seed=3, compaction_entries=20) as sim:
        outcome = stale_reset_then_snapshot(sim, stale_reset=False)
        assert outcome["acknowledged"] == 85                  # the last 5 acks were lost
        assert outcome["held"] > outcome["snapshot_end"]
        assert outcome["lost"] == []
        assert sim.world.violations == []


def test_a_snapshot_ahead_of_the_log_replaces_it_and_the_follower_catches_up():
    """A replica that missed more than the leader keeps gets the snapshot, then the rest."""
    with Simulation(seed=5, compaction_entries=20) as sim:
        leader = settle(sim)
        straggler = sorted(n for n in sim.names if n != leader)[0]
        sim.crash(straggler)
        sim.write(leader, 80)
        settle(sim)
        sim.run_until(lambda: False, seconds=0.5)
        assert entries(sim.replicas[leader].obj)[0][1] > 10   # compacted past the straggler
        sim.restart(straggler)
        assert sim.run_until(sim.converged, seconds=10)
        assert sim.lost_acknowledged(straggler) == []


# --------------------------------------------------------------- append entries

def conflicting_append(sim: Simulation) -> tuple[str, str, list]:
    """A replica in a newer term sends a follower an entry that conflicts with a committed one."""
    leader = settle(sim)
    follower, other = sorted(n for n in sim.names if n != leader)
    sim.write(leader, 5)
    settle(sim)
    obj = sim.replicas[follower].obj
    before = entries(obj)
    committed = obj.raftCommitIndex
    prev = before[committed - 2 - before[0][1]]               # the entry before the last committed
    sim.network.inject(other, follower, {
        'type': 'append_entries', 'term': obj.raftCurrentTerm + 1, 'commit_index': committed,
        'prevLogIdx': prev[1], 'prevLogTerm': prev[2],
        'entries': [(b'\x01', committed, obj.raftCurrentTerm + 1)]})
    sim.network.deliver((other, follower))
    return follower, other, before


def test_a_committed_entry_is_never_replaced(caplog):
    with Simulation(seed=11) as sim, caplog.at_level(logging.ERROR, logger="bazar.raft"):
        follower, other, before = conflicting_append(sim)
        assert entries(sim.replicas[follower].obj) == before       # unchanged
        replies = [m.message() for m in sim.network.queues.get((follower, other), [])]
        assert not any(r.get('success') for r in replies)           # and not acknowledged
        assert "would replace a committed entry" in caplog.text


def test_pysyncobj_own_follower_replaces_a_committed_entry():
    with original_follower(), Simulation(seed=11) as sim:
        follower, _, before = conflicting_append(sim)
        assert entries(sim.replicas[follower].obj)[-1] != before[-1]


def test_a_heartbeat_commits_only_what_it_covers():
    """Rule 5: commit min(leaderCommit, last index the message covers). A follower keeps a
    stale tail it has not been told conflicts, and must not commit it on a leader's word."""
    with Simulation(seed=13) as sim:
        leader = settle(sim)
        follower, other = sorted(n for n in sim.names if n != leader)
        sim.network.partition({leader, follower}, {other})
        sim.write(leader, 3)
        sim.tick(leader)
        sim.network.deliver_all_on((leader, follower))          # stored; the acks never arrive
        obj = sim.replicas[follower].obj
        committed, end = obj.raftCommitIndex, last_index(sim, follower)
        assert end > committed
        term = obj.raftCurrentTerm + 1                           # `other`, as a newer leader
        sim.network.heal()
        prev = entries(obj)[committed - entries(obj)[0][1]]
        sim.network.inject(other, follower, {
            'type': 'append_entries', 'term': term, 'commit_index': end + 5,
            'prevLogIdx': prev[1], 'prevLogTerm': prev[2], 'entries': []})
        sim.network.deliver((other, follower))
        assert obj.raftCommitIndex == committed                  # not the unverified tail
        assert last_index(sim, follower) == end                  # kept until shown to conflict
        reply = sim.network.queues[(follower, other)][-1].message()
        assert (reply['success'], reply['next_node_idx']) == (True, committed + 1)


# ------------------------------------------------- a journal that lost its tail

def lose_journal_tail(sim: Simulation, name: str, keep: int) -> None:
    """Cut a crashed replica's journal to `keep` entries; its stored commit index stays.

    With Bazar's journal this is what fsync off allows after a power cut: the
    state file (commit index) reached the disk, the journal's tail did not. The
    simulation is told (`damaged`): its restart check expects no loss otherwise."""
    sim.damaged.add(name)
    path = str(sim.root / name / "journal.bin")
    journal = DurableJournal(path) if sim.uses_bazar_journal else PYSYNCOBJ_JOURNAL(path)
    try:
        journal.deleteEntriesFrom(keep)
    finally:
        journal._destroy()


def amnesiac_with_a_stale_peer(sim: Simulation) -> tuple[str, str, str]:
    """`amnesiac` stored commit index 52 but its journal kept 30 entries; the only replica
    up with it is `behind`, which was partitioned away before the writes."""
    leader = settle(sim)
    amnesiac, behind = sorted(n for n in sim.names if n != leader)
    sim.network.partition({leader, amnesiac}, {behind})
    sim.write(leader, 50)
    settle_pair = lambda: sim.replicas[amnesiac].obj.raftLastApplied == last_index(sim, leader)  # noqa: E731
    assert sim.run_until(settle_pair, seconds=5)
    sim.run_until(lambda: False, seconds=2)                     # the commit index is stored
    sim.crash(amnesiac)
    lose_journal_tail(sim, amnesiac, keep=30)
    sim.crash(leader)
    sim.restart(amnesiac)
    sim.network.heal()
    return leader, amnesiac, behind


def test_pysyncobj_own_replica_votes_after_losing_committed_entries():
    with original_follower(), Simulation(seed=17, journal=PYSYNCOBJ_JOURNAL) as sim:
        sim.world.fail = sim.world.violations.append
        _, amnesiac, _ = amnesiac_with_a_stale_peer(sim)
        sim.run_until(lambda: False, seconds=5)
    # It is elected (with the stale replica's vote) and overwrites committed entries.
    assert any(v.startswith(f"leader {amnesiac} ") for v in sim.world.violations)


@pytest.mark.parametrize("journal", [PYSYNCOBJ_JOURNAL, None], ids=["pysyncobj-journal", "bazar-journal"])
def test_a_replica_that_lost_committed_entries_neither_votes_nor_campaigns_until_caught_up(journal):
    with Simulation(seed=17, journal=journal) as sim:
        leader, amnesiac, behind = amnesiac_with_a_stale_peer(sim)
        sim.run_until(lambda: False, seconds=5)
        assert sim.leader() is None                              # no leader lacking them
        assert missing_committed_up_to(sim.replicas[amnesiac].obj) >= 52
        assert sim.replicas[amnesiac].obj.raftCommitIndex <= 31  # clamped in memory
        sim.restart(leader)                                      # the replica that has them
        assert sim.run_until(sim.converged, seconds=10)
        assert missing_committed_up_to(sim.replicas[amnesiac].obj) is None
        assert all(sim.lost_acknowledged(name) == [] for name in sim.names)


def damage_mid_journal(sim: Simulation, name: str, saved_commit: int, damaged: int) -> None:
    """A crashed replica's journal with one flipped bit in entry `damaged`, its saved commit
    index lagging at `saved_commit` (it is saved at most once a second: a crash within that
    second leaves it behind the entries the replica acknowledged)."""
    path = sim.root / name / "journal.bin"
    journal = DurableJournal(path)
    try:
        journal.setRaftCommitIndex(saved_commit)   # saved when the journal closes
        position = journal._starts[damaged - journal[0][1]] + journal_module.RECORD.size \
            + journal_module.ENTRY.size
    finally:
        journal._destroy()
    data = bytearray(path.read_bytes())
    data[position] ^= 0x04
    path.write_bytes(bytes(data))
    sim.damaged.add(name)   # its disk lost entries: the restart check must not call that a bug


def test_a_replica_repaired_after_mid_journal_damage_votes_only_once_it_has_the_entries_back():
    """Entry 31 of 52 is damaged on `repaired`'s disk; 32..52 are sound but cut with it, and
    the only replica up with it is `behind`, which lacks them. Treated as a torn tail (the
    saved commit index, 20, lags), `repaired` would win behind's vote and overwrite them."""
    with Simulation(seed=17, fsync=True) as sim:
        leader = settle(sim)
        repaired, behind = sorted(n for n in sim.names if n != leader)
        sim.network.partition({leader, repaired}, {behind})
        sim.write(leader, 50)
        settle_pair = lambda: sim.replicas[repaired].obj.raftLastApplied == last_index(sim, leader)  # noqa: E731
        assert sim.run_until(settle_pair, seconds=5)
        committed = last_index(sim, leader)
        sim.crash(repaired)
        damage_mid_journal(sim, repaired, saved_commit=20, damaged=31)
        sim.crash(leader)
        sim.restart(repaired)
        sim.network.heal()
        assert last_index(sim, repaired) == 30                    # cut at the damage
        sim.run_until(lambda: False, seconds=5)
        assert sim.leader() is None                               # no leader lacking 31..52
        assert missing_committed_up_to(sim.replicas[repaired].obj) == committed
        sim.restart(leader)                                       # the replica that has them
        assert sim.run_until(sim.converged, seconds=10)
        assert missing_committed_up_to(sim.replicas[repaired].obj) is None
        assert all(sim.lost_acknowledged(name) == [] for name in sim.names)


def test_entries_kept_after_mid_journal_damage_are_not_counted_committed():
    """A deposed leader appended 30 entries no one else holds (uncommitted) and its disk
    damaged one of them. The repair cuts the log at the damage and keeps it from voting
    until it has entries up to the last sound one again; it must not count anything past
    its real commit index as committed. (The repair once raised the saved commit index to
    that last sound index, the replica then took its log's end for committed, applied the
    uncommitted entries and refused the new leader's entries there: schedule 146 of seed 0.)"""
    with Simulation(seed=17, fsync=True) as sim:
        old = settle(sim)
        committed = last_index(sim, old)
        others = set(sim.names) - {old}
        sim.network.partition({old}, others)
        sim.write(old, 30)
        sim.run_until(lambda: last_index(sim, old) >= committed + 30, seconds=2)
        assert sim.replicas[old].obj.raftCommitIndex == committed  # alone: nothing commits
        sim.crash(old)
        damage_mid_journal(sim, old, saved_commit=committed, damaged=committed + 10)
        sim.restart(old)
        assert last_index(sim, old) == committed + 9               # cut at the damage
        assert sim.run_until(lambda: sim.leader() in others, seconds=5)
        sim.write(sim.leader(), 5)                                 # other entries at the same indexes
        sim.network.heal()
        assert sim.run_until(sim.converged, seconds=10), sim.world.violations
        assert sim.replicas[old].obj.raftCommitIndex >= committed + 5
        assert all(sim.lost_acknowledged(name) == [] for name in sim.names)
        assert sim.world.violations == []


def test_a_follower_repaired_within_the_leaders_term_catches_up():
    """A follower acknowledged 40 entries, crashed, and its journal was repaired (cut at a
    damaged entry) while the same leader ran on. The leader's match index for it lies past
    its log's end now; its failure replies say it lost entries (`behind`), and the leader
    sends from its log's end. (Holding the next index at match + 1, the guard against stale
    resets, sent from past that end for the rest of the term: it never caught up.)"""
    with Simulation(seed=17, fsync=True) as sim:
        leader = settle(sim)
        term = sim.replicas[leader].obj.raftCurrentTerm
        repaired = min(n for n in sim.names if n != leader)
        sim.write(leader, 40)
        settle(sim)
        saved = sim.replicas[repaired].obj.raftCommitIndex - 30
        sim.crash(repaired)
        damage_mid_journal(sim, repaired, saved_commit=saved, damaged=saved + 5)
        sim.restart(repaired)
        sim.tick(repaired)
        assert missing_committed_up_to(sim.replicas[repaired].obj) is not None
        assert sim.run_until(sim.converged, seconds=10), "the repaired follower never caught up"
        assert sim.replicas[leader].obj.raftCurrentTerm == term and sim.leader() == leader
        assert missing_committed_up_to(sim.replicas[repaired].obj) is None
        assert all(sim.lost_acknowledged(name) == [] for name in sim.names)
