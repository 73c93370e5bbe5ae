"""RaftMember.hand_off, what a leader told to stop does first, on a real three-member group in
this process: it hands leadership to a connected follower within a round trip, and with no
follower connected it gives up at once instead of waiting out its timeout.

The second is what a whole cluster stopped at once meets: every follower is gone before the
leader's hand-off can find one, and each leader used to wait its whole HAND_OFF_SECONDS (a
second) before stopping, in `bazar up`'s Ctrl-C, in every test's cleanup and in chaos.
"""
from __future__ import annotations

import time

import pytest

from bazar.cluster.config import RaftConfig
from tests.unit.raft_groups import leader_of, start_group

TIMEOUT = 5.0  # far longer than either case needs


@pytest.fixture
def group(tmp_path):
    # A leader that hears from no follower steps down after leader_fallback_timeout (1 s by
    # default); here it stays leader long enough to be told to stop, however slow the machine.
    members = start_group(tmp_path, raft=RaftConfig(leader_fallback_timeout=30.0))
    yield members
    for member in members:
        member.close()


def test_a_leader_hands_off_to_a_connected_follower(group):
    leader = leader_of(group)
    assert leader.hand_off(TIMEOUT) is True
    assert not leader.is_leader and leader.leader is not None
    assert leader_of(group) is not leader


def test_a_leader_with_no_follower_connected_gives_up_at_once(group):
    leader = leader_of(group)
    for member in group:
        if member is not leader:
            member.close()
    deadline = time.monotonic() + 5
    while any(leader.status()["peers"].values()):
        assert time.monotonic() < deadline, "the leader still sees a closed follower connected"
        time.sleep(0.02)
    assert leader.is_leader
    started = time.monotonic()
    assert leader.hand_off(TIMEOUT) is False
    took = time.monotonic() - started
    assert took < TIMEOUT / 2, f"hand_off waited {took:.1f} s with no follower to hand leadership to"
