"""PySyncObj's utility messages on Bazar's Raft port (issue "Log safety", item 7.4).

PySyncObj answers "utility" commands on its Raft port, the ones its `syncobj_admin`
tool sends: a connection whose first message is a list such as ['add', 'host:port'] or
['remove', 'host:port'] makes the node append a membership change, as if its own code
had asked. Bazar changes membership only through `RaftMember.change_membership`: the
directory record first, one change at a time, never one that leaves the group without
a majority in touch with its leader. A utility 'add' or 'remove' bypassed all of it
(anyone with the cluster secret, and anyone on the machine in a loopback cluster run
without one), and so did 'set_version', which appends an entry as well.

Shown on a real three-member group: the leader appended the change and answered
"SUCCESS add 127.0.0.1:<port>". Now (consensus/admin_guard.py) the three commands that
write to the log are refused ("FAIL ..."), nothing is appended, and the read-only or
harmless ones ('status', 'transfer') still work.
"""
from __future__ import annotations

import threading

import pytest
from pysyncobj import FAIL_REASON
from pysyncobj.utility import TcpUtility, UtilityException

from bazar.local.cluster import free_ports
from tests.unit.raft_groups import leader_of, start_group

SECRET = "utility-test-secret"


@pytest.fixture(params=[None, SECRET], ids=["loopback-without-secret", "with-secret"])
def group(request, tmp_path):
    members = start_group(tmp_path, password=request.param)
    yield members, request.param
    for member in members:
        member.close()


def send(address: str, command: list, password: str | None) -> str:
    """Send one utility command as `syncobj_admin` does; PySyncObj's answer."""
    return TcpUtility(password=password, timeout=5.0).executeCommand(address, command)


def membership_entries(member) -> list:
    journal = member.syncobj._SyncObj__raftLog
    return [journal[i] for i in range(len(journal)) if journal[i][0][:1] == b"\x02"]


def test_a_utility_add_or_remove_on_the_raft_port_is_refused(group):
    members, password = group
    leader = leader_of(members)
    address = leader.syncobj.selfNode.address
    follower = next(m for m in members if m is not leader).syncobj.selfNode.address
    voters = leader._voters()
    stranger = f"127.0.0.1:{free_ports(1)[0]}"

    added = send(address, ["add", stranger], password)
    removed = send(address, ["remove", follower], password)
    version = send(address, ["set_version", 0], password)

    assert added.startswith("FAIL") and removed.startswith("FAIL") and version.startswith("FAIL"), \
        (added, removed, version)
    assert leader._voters() == voters
    assert membership_entries(leader) == []


def test_status_still_answers(group):
    members, password = group
    leader = leader_of(members)
    status = send(leader.syncobj.selfNode.address, ["status"], password)
    assert status["state"] == 2 and status["partner_nodes_count"] == 2


def test_a_membership_change_forwarded_by_a_follower_is_refused(group):
    """PySyncObj forwards a change asked of a follower to the leader ('apply_command'),
    which appended it without any of Bazar's checks (RaftMember asks only the leader, but
    a leadership change between its check and its call makes it a follower). Seen
    failing: the leader appended it and the follower's callback got SUCCESS (0)."""
    members, _ = group
    leader = leader_of(members)
    follower = next(m for m in members if m is not leader)
    voters = leader._voters()
    outcome = []
    done = threading.Event()
    follower.syncobj.addNodeToCluster(f"127.0.0.1:{free_ports(1)[0]}",
                                      callback=lambda _, error: (outcome.append(error), done.set()))
    assert done.wait(10)
    assert outcome == [FAIL_REASON.REQUEST_DENIED]
    assert leader._voters() == voters
    assert membership_entries(leader) == []


def _entries(member) -> int:
    return member.syncobj._SyncObj__raftLog[-1][1]


def _generated_commands(rng, stranger: str, follower: str) -> list[list]:
    """A sequence an admin tool, or anyone holding the secret, might send: every utility
    command PySyncObj knows, with arguments drawn from seed `rng`."""
    kinds = [lambda: ["add", stranger], lambda: ["remove", follower], lambda: ["set_version", rng.randint(0, 3)],
             lambda: ["status"], lambda: ["add", f"127.0.0.1:{rng.randint(1, 65535)}"]]
    return [rng.choice(kinds)() for _ in range(rng.randint(3, 8))]


def _drive(members, password, seed: int) -> list[str]:
    """Send the commands of `seed` to the leader; the ones after which its log grew."""
    import random
    leader = leader_of(members)
    follower = next(m for m in members if m is not leader).syncobj.selfNode.address
    stranger = f"127.0.0.1:{free_ports(1)[0]}"
    grew = []
    for command in _generated_commands(random.Random(seed), stranger, follower):
        before = _entries(leader)
        try:
            answer = send(leader.syncobj.selfNode.address, list(command), password)
        except UtilityException as lost:   # the group a change broke may not answer
            answer = f"no answer ({lost})"
        if command[0] == "status" and before == _entries(leader):
            assert answer["state"] == 2, answer
        if _entries(leader) != before:
            grew.append(f"{command} -> {answer}")
            break   # the group is no longer the one the sequence was drawn for
    return grew


def test_generated_utility_commands_append_nothing_and_a_reverted_guard_is_caught(tmp_path):
    """Generated sequences of PySyncObj's utility commands never make the leader append an
    entry (the simulator has no sockets, so this is how the guard's absence is caught):
    with consensus/admin_guard.py's correction in place, none of 10 sequences appends; with
    it reverted alone, the first sequence that sends a change does."""
    from tests.sim.mutation import reverted

    members = start_group(tmp_path, password=SECRET)
    try:
        for seed in range(10):
            assert _drive(members, SECRET, seed) == [], seed
        with reverted("_onUtilityMessage"):
            caught = next((seed for seed in range(10, 30) if _drive(members, SECRET, seed)), None)
        assert caught is not None, "20 generated sequences appended nothing with the guard reverted"
    finally:
        for member in members:
            member.close()
