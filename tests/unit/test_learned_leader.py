"""A member whose configuration does not name the current leader learns it from its peers
(consensus/raft_fixes.py, item 8), on real groups in this process, over loopback TCP with a
cluster secret (encrypted links).

Before, PySyncObj's transport connected only to the nodes a configuration names, so such a
member (a frontend's follower started from a file older than the leader, a replica that
missed the change adding it) never heard the leader and never caught up. The simulator's
schedules show it for voters (tests/sim/test_unknown_leader.py); here the frontend's case.
"""
from __future__ import annotations

import time

import pytest

from bazar.cluster.config import RaftConfig
from bazar.consensus.member import RaftMember
from bazar.consensus.settings import syncobj_conf
from bazar.consensus.state import ReplicatedState
from bazar.consensus.transport import MAX_LEARNED
from bazar.local.cluster import free_ports
from bazar.node.catalog import CatalogState
from tests.unit.raft_groups import leader_of, running_group

SECRET = "learned-leader-test-secret-0123456789abcdef"
BOOK = {"title": "A", "topic": "t", "price": 10.0, "stock": 5}


@pytest.fixture
def group(tmp_path):
    yield from running_group(tmp_path, password=SECRET)


def test_a_follower_started_without_the_leader_in_its_file_learns_it_and_catches_up(group):
    leader = leader_of(group)
    leader.submit({"op": "add_book", "request_id": "before", **BOOK}, timeout=10)
    followers = [m.syncobj.selfNode.address for m in group if m is not leader]
    # A non-voting follower (a frontend's) whose file names the two followers only.
    late = RaftMember(None, followers, ReplicatedState(CatalogState()), syncobj_conf(RaftConfig(), None, SECRET))
    try:
        leader.submit({"op": "add_book", "request_id": "after", **BOOK}, timeout=10)
        commit = leader.status()["commit_index"]
        deadline = time.monotonic() + 15
        while late.status()["applied_index"] < commit:
            assert time.monotonic() < deadline, (
                f"the follower never caught up with leader {leader.syncobj.selfNode.address}: {late.status()}")
            time.sleep(0.05)
        assert late.leader == leader.syncobj.selfNode.address
        # It learnt the leader's address without making it a voter of its configuration.
        assert leader.syncobj.selfNode.address not in late.status()["peers"]
    finally:
        late.close()


def test_learned_peers_are_bounded_and_only_well_formed_addresses_are_learned(group):
    transport = group[0]._transport
    own = group[0].syncobj.selfNode.address
    assert not transport.learn_peer(own)
    assert not transport.learn_peer(group[1].syncobj.selfNode.address)   # a member already
    for wrong in ("no-port", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:70000", ":5000"):
        assert not transport.learn_peer(wrong), wrong
    ports = free_ports(MAX_LEARNED + 3)
    for port in ports:
        assert transport.learn_peer(f"127.0.0.1:{port}")
    learned = {node.address for node in transport._learned}
    assert learned == {f"127.0.0.1:{port}" for port in ports[-MAX_LEARNED:]}   # the oldest went first
    members = {m.syncobj.selfNode.address for m in group[1:]}
    assert {n.address for n in transport._nodes} == members | learned
