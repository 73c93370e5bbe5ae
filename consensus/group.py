"""Join a Raft group: the one way Bazar builds a PySyncObj member.

Everything a member needs is decided here, once, from `cluster.yaml`: the cluster
secret (refused off loopback without one), PySyncObj's settings with Bazar's
journal and snapshot files, the address outgoing Raft connections leave from,
and Bazar's corrections to PySyncObj (installed by importing `consensus`). Code
outside `consensus/` never imports pysyncobj: it gets a `RaftMember` from `join`
and talks to it (submit, read_index, in_touch, wait_applied, on_tick, close).
"""
from __future__ import annotations

from typing import Iterable

from bazar.cluster.config import ClusterConfig
from bazar.consensus.directory import Directory
from bazar.consensus.member import RaftMember
from bazar.consensus.security import raft_password
from bazar.consensus.settings import syncobj_conf
from bazar.consensus.state import ApplyListener, ReplicatedState
from bazar.consensus.transport import connect_from


def join(config: ClusterConfig, group: str, machine, node_id: str | None = None,
         source_host: str | None = None, listeners: Iterable[ApplyListener] = ()) -> RaftMember:
    """This process's member of `group`, replicating `machine`, already started.

    With `node_id`, a voting replica with its journal and snapshot under
    `data_dir/<node_id>`; without, a non-voting follower that keeps nothing on disk
    and connects from `source_host` (a frontend). `listeners` hear of every applied
    entry from the first one on: they are attached before the member starts.
    One member per process: the source address is a process-wide setting.
    """
    voters = config.group(group)
    password = raft_password(config)
    state = ReplicatedState(machine)
    for listener in listeners:
        state.add_listener(listener)
    if node_id is None:
        self_address = None
        conf = syncobj_conf(config.raft, data_dir=None, password=password)
    else:
        node = config.node(node_id)
        if node.group != group:
            raise ValueError(f"{node_id} is a {node.group} replica, not a {group} one")
        self_address = str(node.raft)
        source_host = node.source_host
        conf = syncobj_conf(config.raft, config.data_dir / node.id, password,
                            bind_address=str(node.bind(node.raft)), group_size=len(voters))
    connect_from(source_host)
    directory = Directory({n.id: {"raft": str(n.raft), "http": n.http.url} for n in voters})
    return RaftMember(self_address, [str(n.raft) for n in voters], state, conf, directory)
