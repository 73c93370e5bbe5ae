"""RaftMember's refusals of a membership change (consensus/membership.py `_check_change`):
a change that would leave the group without a majority of members in touch with its
leader, and a change while another is still in flight, are refused before anything is
written to the log.

The quorum arithmetic is checked on a member whose PySyncObj is a stand-in (which
peers are connected is all it reads); the in-flight check on a real three-member group
on loopback, whose followers stop acknowledging while a change is in the log."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from bazar.cluster.config import RaftConfig
from bazar.consensus.directory import Directory
from bazar.consensus.errors import CommitError, MembershipRefused
from bazar.consensus.member import RaftMember
from bazar.local.cluster import free_ports
from tests.unit.raft_groups import leader_of, start_group

A, B, C, D, E, NEW = (f"10.0.0.1:{port}" for port in (1, 2, 3, 4, 5, 9))
NAMES = {A: "a", B: "b", C: "c", D: "d", E: "e", NEW: "new"}


class StandInSyncObj:
    """What `_check_change` reads of PySyncObj: the voters, who is connected, the leader's
    role, and whether its first entry of the term is applied."""

    def __init__(self, me: str, others: list[str], connected: set[str], leading: bool = True,
                 term_applied: bool = True) -> None:
        self.selfNode = SimpleNamespace(address=me)
        self.otherNodes = [SimpleNamespace(address=address) for address in others]
        self.connected = connected
        self.leading = leading
        self._SyncObj__noopIDx = 7
        self.raftLastApplied = 9 if term_applied else 6

    def isNodeConnected(self, node) -> bool:
        return node.address in self.connected

    def _isLeader(self) -> bool:
        return self.leading


def member_of(voters: list[str], connected: set[str], **options) -> RaftMember:
    """The leader (the first of `voters`), in touch with `connected`, its directory listing
    every voter."""
    member = RaftMember.__new__(RaftMember)  # no PySyncObj: the stand-in is all it reads
    member.syncobj = StandInSyncObj(voters[0], voters[1:], connected, **options)
    member.directory = Directory({NAMES[v]: {"raft": v, "http": f"http://{v}"} for v in voters})
    member._changing = threading.Lock()
    member._voter_change_in_flight = False
    member.hand_off = lambda timeout: True
    return member


def add(address: str = NEW) -> dict:
    return {"op": "add", "id": NAMES[address], "raft": address, "http": f"http://{address}"}


def remove(address: str) -> dict:
    return {"op": "remove", "id": NAMES[address], "raft": address}


def refusal(member: RaftMember, change: dict) -> MembershipRefused | None:
    try:
        member._check_change(change)
    except MembershipRefused as refused:
        return refused
    return None


# -- adding ----------------------------------------------------------------------

def test_an_add_with_every_member_in_touch_is_allowed():
    assert refusal(member_of([A, B, C], {B, C}), add()) is None


def test_an_add_with_one_of_three_members_dead_is_refused():
    """4 members would need 3 votes; the leader and one follower are only 2."""
    refused = refusal(member_of([A, B, C], {B}), add())
    assert refused.kind == "quorum" and "majority" in refused.reason and "only 2" in refused.reason


def test_an_add_to_five_with_one_dead_is_allowed_and_with_two_dead_refused():
    assert refusal(member_of([A, B, C, D, E], {B, C, D}), add()) is None
    assert refusal(member_of([A, B, C, D, E], {B, C}), add()).kind == "quorum"


# -- removing --------------------------------------------------------------------

def test_removing_the_dead_member_of_three_is_allowed():
    assert refusal(member_of([A, B, C], {B}), remove(C)) is None


def test_removing_a_live_member_while_another_is_dead_is_refused():
    """Left: the leader and the dead one, 1 of 2 in touch, no majority."""
    refused = refusal(member_of([A, B, C], {B}), remove(B))
    assert refused.kind == "quorum" and "majority" in refused.reason and "only 1" in refused.reason


def test_removing_the_leader_while_another_is_dead_is_refused_before_any_hand_off():
    member = member_of([A, B, C], {B})
    member.hand_off = lambda timeout: pytest.fail("handed leadership over for a change it then refused")
    assert refusal(member, remove(A)).kind == "quorum"


def test_removing_the_leader_with_every_member_in_touch_hands_it_over():
    refused = refusal(member_of([A, B, C], {B, C}), remove(A))
    assert refused.kind == "not_leader" and "new leader" in refused.reason


def test_removing_from_five_with_two_dead():
    """Removing a dead one leaves 4 with 3 in touch (a majority); removing a live one leaves
    4 with 2 in touch (not one)."""
    member = member_of([A, B, C, D, E], {B, C})
    assert refusal(member, remove(D)) is None
    assert refusal(member, remove(B)).kind == "quorum"


def test_removing_from_four_with_one_not_started_is_allowed():
    """A member added but not started yet: the other three are a majority of what is left."""
    assert refusal(member_of([A, B, C, D], {B, C}), remove(B)) is None


def test_the_last_member_cannot_be_removed():
    refused = refusal(member_of([A], set()), remove(A))
    assert refused.kind == "quorum" and "last member" in refused.reason


def test_removing_a_stranger_or_a_member_at_another_address():
    assert refusal(member_of([A, B, C], {B, C}), remove(D)).kind == "unknown"
    wrong = {**remove(B), "raft": D}
    assert refusal(member_of([A, B, C], {B, C}), wrong).kind == "conflict"


# -- who may change it, and when --------------------------------------------------

@pytest.mark.parametrize("change", [add(), remove(C)], ids=["add", "remove"])
def test_a_follower_refuses_any_change(change):
    assert refusal(member_of([A, B, C], {B, C}, leading=False), change).kind == "not_leader"


@pytest.mark.parametrize("change", [add(), remove(C)], ids=["add", "remove"])
def test_a_change_while_another_is_in_flight_here_is_refused_and_changes_nothing(change):
    member = member_of([A, B, C], {B, C})
    member.submit_to = lambda *args: pytest.fail("a refused change was written to the log")
    with member._changing:  # another request's change, between its two entries
        with pytest.raises(MembershipRefused) as refused:
            member.change_membership(change, timeout=1.0)
    assert refused.value.kind == "busy" and "in flight" in refused.value.reason


@pytest.mark.parametrize("change", [add(), remove(C)], ids=["add", "remove"])
def test_a_new_leader_refuses_until_an_entry_of_its_term_is_applied(change):
    """Until then its log may hold a change an earlier leader began, not yet committed
    (Raft's single-server changes allow one at a time); PySyncObj would deny the voter
    change only after the directory had recorded it."""
    refused = refusal(member_of([A, B, C], {B, C}, term_applied=False), change)
    assert refused is not None and refused.kind == "busy"


# -- a change left in flight by a timeout, on a real group ---------------------------

@pytest.fixture
def group(tmp_path):
    """Three members that never give up leadership on their own within a test (the leader
    falls back only after 30 s without answers)."""
    members = start_group(tmp_path, raft=RaftConfig(leader_fallback_timeout=30.0), with_directory=True)
    yield members
    for member in members:
        member.close()


def stop_acknowledging(member: RaftMember) -> None:
    """The follower still receives and applies entries (so nobody starts an election), but
    its acknowledgments never reach the leader: nothing new commits."""
    send = member._transport.send
    member._transport.send = lambda node, message: (
        True if isinstance(message, dict) and message.get("type") == "next_node_idx" else send(node, message))


def test_a_change_that_timed_out_in_the_log_blocks_the_next_until_it_commits(group):
    leader = leader_of(group)
    followers = [m for m in group if m is not leader]
    leader.submit({"op": "add_book", "request_id": "r1", "title": "A", "topic": "t", "price": 1.0,
                   "stock": 1}, timeout=10)
    spare = f"127.0.0.1:{free_ports(1)[0]}"  # a fourth member that never starts
    original_ids = [m["id"] for m in leader.directory.view()["members"]]

    # The add's directory record commits; then the followers fall silent, so its voter
    # change is appended but times out uncommitted: still in flight.
    record = leader.submit_to

    def record_then_fall_silent(*args):
        result = record(*args)
        for follower in followers:
            stop_acknowledging(follower)
        return result

    leader.submit_to = record_then_fall_silent
    with pytest.raises(CommitError):
        leader.change_membership({"op": "add", "id": "m9", "raft": spare, "http": f"http://{spare}"}, timeout=0.5)
    del leader.submit_to

    # Every member is still connected, so only the change in flight can refuse this one.
    gone = followers[0].syncobj.selfNode.address
    gone_id = next(m["id"] for m in leader.directory.view()["members"] if m["raft"] == gone)
    with pytest.raises(MembershipRefused) as refused:
        leader.change_membership({"op": "remove", "id": gone_id, "raft": gone}, timeout=0.5)
    assert refused.value.kind == "busy" and "in flight" in refused.value.reason

    # Once the followers answer again the add commits, and the next change is taken.
    for follower in followers:
        del follower._transport.send
    deadline = time.monotonic() + 10
    while True:
        try:
            view = leader.change_membership({"op": "remove", "id": "m9", "raft": spare}, timeout=5)
            break
        except MembershipRefused as busy:
            assert busy.kind == "busy" and time.monotonic() < deadline, busy.reason
            time.sleep(0.1)
    assert [m["id"] for m in view["members"]] == original_ids, "the refused remove changed the directory"
    assert spare not in leader._voters() and len(leader._voters()) == 3
