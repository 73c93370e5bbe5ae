"""RaftMember.read_index and in_touch on a real three-member group, in this process, on loopback.

The probe rounds travel in real PySyncObj messages here, so these tests show the
echo works end to end: a leader confirms reads only with a majority's answers,
and appends nothing for them.
"""
from __future__ import annotations

import time

import pytest

from bazar.consensus.member import ReadRefused
from tests.unit.raft_groups import leader_of, start_group

BOOK = {"title": "A", "topic": "t", "price": 10.0, "stock": 5}


@pytest.fixture
def group(tmp_path):
    members = start_group(tmp_path)
    yield members
    for member in members:
        member.close()


def test_the_leader_confirms_reads_without_appending_and_followers_refuse(group):
    leader = leader_of(group)
    leader.submit({"op": "add_book", "request_id": "r1", **BOOK}, timeout=10)
    commit = leader.status()["commit_index"]
    indexes = [leader.read_index(timeout=5) for _ in range(50)]
    assert indexes == [commit] * 50
    assert leader.status()["commit_index"] == commit  # nothing was appended
    for follower in (m for m in group if m is not leader):
        with pytest.raises(ReadRefused):
            follower.read_index(timeout=5)


def test_a_leader_without_its_majority_refuses_reads(group):
    leader = leader_of(group)
    leader.read_index(timeout=5)
    for member in group:
        if member is not leader:
            member.close()
    # It may still believe it leads for leader_fallback_timeout, but no heartbeat
    # round is answered any more, so no read is confirmed.
    with pytest.raises(ReadRefused):
        leader.read_index(timeout=0.5)


def test_a_follower_is_in_touch_until_its_leader_goes_silent_for_the_lag_bound(group):
    leader = leader_of(group)
    leader.submit({"op": "add_book", "request_id": "r2", **BOOK}, timeout=10)
    lag = 0.5
    deadline = time.monotonic() + 10
    while not all(m.in_touch(lag) for m in group):
        assert time.monotonic() < deadline, "members never reported being in touch"
        time.sleep(0.05)
    alone = next(m for m in group if m is not leader)
    for member in group:
        if member is not alone:
            member.close()
    deadline = time.monotonic() + lag + 5
    while alone.in_touch(lag):
        assert time.monotonic() < deadline, "a follower alone still says it is in touch"
        time.sleep(0.05)
