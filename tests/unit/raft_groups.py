"""Small real Raft groups in one process, for unit tests of the consensus layer."""
from __future__ import annotations

import time

from bazar.cluster.config import RaftConfig
from bazar.consensus.directory import Directory
from bazar.consensus.member import RaftMember
from bazar.consensus.settings import syncobj_conf
from bazar.consensus.state import ReplicatedState
from bazar.local.cluster import free_ports
from bazar.node.catalog import CatalogState


def start_group(directory, size: int = 3, raft: RaftConfig | None = None,
                with_directory: bool = False, password: str | None = None) -> list[RaftMember]:
    """`size` catalog members on free loopback ports, their files under `directory`; with
    `with_directory`, each knows the others' addresses as the log's membership records would;
    with `password`, their Raft links are encrypted with it (a cluster secret)."""
    addresses = [f"127.0.0.1:{port}" for port in free_ports(size)]
    members = []
    for i, address in enumerate(addresses):
        known = (Directory({f"m{j}": {"raft": a, "http": f"http://{a}"} for j, a in enumerate(addresses)})
                 if with_directory else None)
        conf = syncobj_conf(raft or RaftConfig(), directory / f"m{i}", password, bind_address=address,
                            group_size=size)
        members.append(RaftMember(address, addresses, ReplicatedState(CatalogState()), conf, known))
    return members


def running_group(directory, **kwargs):
    """`start_group` for a pytest fixture: yields the members, and closes them afterwards."""
    members = start_group(directory, **kwargs)
    try:
        yield members
    finally:
        for member in members:
            member.close()


def start_non_voter(members: list[RaftMember], raft: RaftConfig | None = None) -> RaftMember:
    """A non-voting member following the group of `members` (as a frontend follows the
    catalog); it keeps nothing on disk."""
    voters = [m.syncobj.selfNode.address for m in members]
    return RaftMember(None, voters, ReplicatedState(CatalogState()),
                      syncobj_conf(raft or RaftConfig(), None, None))


def cut_off(island: list[RaftMember], everyone: list[RaftMember]) -> None:
    """From now on, drop every Raft message between the members of `island` and the others,
    as a firewall that DROPs packets would: the connections stay up, nothing arrives.
    Members without an address of their own (non-voting) go with `island` only if in it."""
    outside = {m.syncobj.selfNode.address for m in everyone if m not in island}
    for member in everyone:
        send = member._transport.send
        inside = any(member is m for m in island)

        def filtered(node, message, send=send, inside=inside) -> bool:
            crosses = (getattr(node, "address", None) in outside) == inside
            return True if crosses else send(node, message)  # a dropped message "was sent"

        member._transport.send = filtered


def leader_of(members: list[RaftMember], timeout: float = 20.0) -> RaftMember:
    """The one member that leads, once the group has elected it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leaders = [m for m in members if m.is_leader]
        if len(leaders) == 1:
            return leaders[0]
        time.sleep(0.05)
    raise AssertionError("no single leader elected")
