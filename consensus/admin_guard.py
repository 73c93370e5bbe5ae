"""Membership changes come only through Bazar: PySyncObj's admin commands are refused.

PySyncObj answers "utility" commands on its Raft port, for its `syncobj_admin` tool: a
connection whose first message is a list such as ['add', 'host:port'] makes the node
run the command as if its own code had asked. Three of them write to the Raft log:

- 'add' and 'remove' append a membership change: they bypass `RaftMember.change_membership`
  (no directory record, so no process learns the member's HTTP address; no check that
  another change is still in flight, the one rule that keeps single-server changes safe;
  no check that a majority of the new group is in touch with the leader);
- 'set_version' appends a code-version switch, which Bazar never uses.

Anyone holding the cluster secret could send them (and anyone on the machine, in a
loopback cluster run without one). Bazar's replicas now answer these three with
PySyncObj's own failure reply ("FAIL <COMMAND> <args>") and change nothing. 'status'
(read-only) and 'transfer' (a leadership hand-off, which changes no log) still work.

A member's own follower code could bypass the guard too: PySyncObj forwards a membership
change asked of a follower to the leader ('apply_command'), which appended it unchecked.
`raft_fixes` refuses such a forwarded change (REQUEST_DENIED); the caller asks the leader.
"""
from __future__ import annotations

import logging

from pysyncobj.config import FAIL_REASON
from pysyncobj.transport import TCPTransport

from bazar.consensus.patching import original, replace

log = logging.getLogger("bazar.raft")

REFUSED = frozenset({"add", "remove", "set_version"})  # the utility commands that write to the log


def _on_utility_message(self: TCPTransport, conn, message: list) -> bool | None:
    """A utility command on a new connection: refused if it would write to the Raft log,
    otherwise PySyncObj's handling. Returns whether the message was a utility command."""
    command = message[0] if message else None
    if isinstance(command, str) and command in REFUSED:
        log.warning("refused PySyncObj admin command %r on the Raft port: membership changes go "
                    "through `bazar member add/remove`", command)
        self._utilityCallback(None, FAIL_REASON.REQUEST_DENIED, conn, [str(command).upper()] + message[1:])
        return True
    return _ORIGINAL(self, conn, message)


replace(TCPTransport, "_onUtilityMessage", _on_utility_message,
        "c8c21643a6eb9576c0eebdf284710ead8bc0ed45934e2b5cd01ecf17907ea0fb",
        "ran 'add', 'remove' and 'set_version' from any connection to the Raft port, "
        "bypassing Bazar's membership checks")
_ORIGINAL = original(TCPTransport, "_onUtilityMessage")
