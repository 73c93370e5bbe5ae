"""The read-index bookkeeping (consensus/reads.py): when a leader may answer a strong read."""
from __future__ import annotations

from hypothesis import given, strategies as st

from bazar.consensus.reads import NOT_LEADER, LeaderView, ReadIndex


def view(leader=True, term=3, commit=10, committed=True, echoes=(0, 0), applied=None) -> LeaderView:
    return LeaderView(leader=leader, term=term, commit_index=commit, term_committed=committed,
                      applied_index=commit if applied is None else applied, echoes=tuple(echoes))


def test_a_read_is_answered_at_the_commit_index_once_a_majority_echoes_a_newer_round():
    reads = ReadIndex()
    reads.add("r")
    finished, opened = reads.step(view(commit=10))
    assert (finished, opened) == ([], True)
    # A heartbeat round older than the read's proves nothing about leadership after it.
    assert reads.step(view(commit=12, echoes=(reads.round - 1, 0)))[0] == []
    finished, opened = reads.step(view(commit=12, echoes=(reads.round, 0)))
    assert finished == [("r", 10)]  # the index taken at admission, not the later one
    assert not opened


def test_a_confirmed_read_waits_until_its_index_is_applied():
    reads = ReadIndex()
    reads.add("r")
    reads.step(view(commit=10, applied=9))
    assert reads.step(view(commit=10, applied=9, echoes=(reads.round, 0)))[0] == []
    assert reads.step(view(commit=10, applied=10, echoes=(reads.round, 0)))[0] == [("r", 10)]


def test_one_echo_is_not_enough_in_a_group_of_five():
    reads = ReadIndex()
    reads.add("r")
    reads.step(view(echoes=(0, 0, 0, 0)))
    assert reads.step(view(echoes=(reads.round, 0, 0, 0)))[0] == []
    assert reads.step(view(echoes=(reads.round, 0, reads.round, 0)))[0] == [("r", 10)]


def test_a_follower_refuses_at_once():
    reads = ReadIndex()
    reads.add("r")
    assert reads.step(view(leader=False)) == ([("r", NOT_LEADER)], False)
    assert reads.pending == 0


def test_a_new_leader_admits_reads_only_once_an_entry_of_its_term_committed():
    reads = ReadIndex()
    reads.add("r")
    assert reads.step(view(committed=False, commit=7)) == ([], False)
    assert reads.pending == 1
    reads.step(view(committed=True, commit=9))
    assert reads.step(view(commit=9, echoes=(reads.round, 0)))[0] == [("r", 9)]


def test_losing_leadership_or_the_term_fails_admitted_reads():
    reads = ReadIndex()
    reads.add("a")
    reads.step(view(term=3))
    assert reads.step(view(term=4, echoes=(reads.round, reads.round)))[0] == [("a", NOT_LEADER)]
    reads.add("b")
    reads.step(view(term=4))
    assert reads.step(view(leader=False, term=4))[0] == [("b", NOT_LEADER)]


def test_a_group_of_one_confirms_in_the_admitting_step():
    reads = ReadIndex()
    reads.add("r")
    assert reads.step(view(commit=5, echoes=())) == ([("r", 5)], True)


def test_reads_admitted_together_share_a_round_and_a_dropped_read_is_forgotten():
    reads = ReadIndex()
    reads.add("a")
    reads.add("b")
    reads.add("c")
    reads.drop("c")
    reads.step(view())
    assert reads.round == 1
    assert sorted(reads.step(view(echoes=(1, 0)))[0]) == [("a", 10), ("b", 10)]
    assert reads.pending == 0


@given(st.lists(st.integers(min_value=0, max_value=6), min_size=0, max_size=6))
def test_the_confirmed_round_is_one_a_majority_reached(echoes):
    confirmed = view(echoes=echoes).confirmed_round()
    group = len(echoes) + 1
    reached = 1 + sum(1 for e in echoes if e >= confirmed)  # this leader counts itself
    assert reached > group / 2
    # and no newer round is confirmed by a majority
    newer = 1 + sum(1 for e in echoes if e > confirmed)
    assert not newer > group / 2 or confirmed == float("inf")
