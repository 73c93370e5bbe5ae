"""RaftMember.read_index and in_touch on a real three-member group, in this process, on loopback.

The probe rounds travel in real PySyncObj messages here, so these tests show the
echo works end to end: a leader confirms reads only with a majority's answers,
and appends nothing for them.
"""
from __future__ import annotations

import time

import pytest

from bazar.cluster.config import RaftConfig
from bazar.consensus.errors import ReadRefused
from tests.unit.raft_groups import cut_off, leader_of, running_group, start_group, start_non_voter

BOOK = {"title": "A", "topic": "t", "price": 10.0, "stock": 5}


@pytest.fixture
def group(tmp_path):
    yield from running_group(tmp_path)


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


def test_followers_of_a_leader_that_stamps_no_majority_age_are_never_in_touch(group):
    """A leader of an older Bazar sends no majority age: its followers cannot know when it
    last heard from a majority, so they never count themselves in touch (local reads fail
    closed), while the leader itself still does. Stamping again brings them back."""
    for member in group:
        member._transport.majority_age = None  # as an older Bazar sends
    leader = leader_of(group)
    leader.submit({"op": "add_book", "request_id": "r3", **BOOK}, timeout=10)
    lag = 0.5
    followers = [m for m in group if m is not leader]
    deadline = time.monotonic() + 10
    while not (leader.in_touch(lag) and all(m.status()["applied_index"] == leader.status()["applied_index"]
                                            for m in followers)):
        assert time.monotonic() < deadline, "the group never caught up"
        time.sleep(0.05)
    for _ in range(10):
        assert not any(m.in_touch(lag) for m in followers), "in touch on an unstamped leader's word"
        time.sleep(0.05)
    for member in group:
        member._transport.majority_age = member._majority_age
    deadline = time.monotonic() + 10
    while not all(m.in_touch(lag) for m in followers):
        assert time.monotonic() < deadline, "followers never in touch once the leader stamps"
        time.sleep(0.05)


# A deposed leader keeps leading in its own eyes for leader_fallback_timeout after it last
# heard from a majority; long here, so the partition below lasts well past the lag bound.
DEPOSED_FOR = 5.0


@pytest.fixture
def five(tmp_path):
    raft = RaftConfig(leader_fallback_timeout=DEPOSED_FOR)
    members = start_group(tmp_path, size=5, raft=raft)
    non_voter = start_non_voter(members, raft=raft)
    yield members, non_voter
    for member in [*members, non_voter]:
        member.close()


def test_a_follower_cut_off_with_a_deposed_leader_is_not_in_touch_past_the_lag_bound(five):
    """{deposed leader, follower, non-voting follower} cut off from the other three: the
    three elect a leader and acknowledge a write that the cut-off followers never see. The
    deposed leader still heartbeats them, but it has not heard from a majority since the
    partition, so neither may count itself in touch more than `lag` after it."""
    members, non_voter = five
    old = leader_of(members)
    old.submit({"op": "add_book", "request_id": "before", **BOOK}, timeout=10)
    lag = 0.5
    everyone = [*members, non_voter]
    deadline = time.monotonic() + 10
    while not all(m.in_touch(lag) for m in everyone):
        assert time.monotonic() < deadline, "members never reported being in touch"
        time.sleep(0.05)
    follower = next(m for m in members if m is not old)
    island = [old, follower, non_voter]
    rest = [m for m in members if m not in island]

    cut_off(island, everyone)
    partitioned = time.monotonic()
    new = leader_of(rest)
    new.submit({"op": "add_book", "request_id": "after", **BOOK, "title": "B"}, timeout=10)
    assert new.status()["commit_index"] > follower.status()["commit_index"]

    # Messages already on their way at the partition may arrive a little later: 0.3 s slack.
    while time.monotonic() < partitioned + lag + 0.3:
        time.sleep(0.05)
    claims = []
    for _ in range(20):
        for name, member in (("follower", follower), ("non-voting follower", non_voter)):
            if member.in_touch(lag):
                claims.append(f"{name} at {time.monotonic() - partitioned:.2f} s")
        time.sleep(0.05)
    assert old.is_leader, "the deposed leader stepped down early: the case was not exercised"
    assert not claims, (f"in touch after the partition, past the {lag} s bound, while a write "
                        f"it lacks was acknowledged: {claims[:2]} ... {claims[-1:]}")
