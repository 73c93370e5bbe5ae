"""How a Raft member fails: the exceptions `RaftMember` raises (exported by `consensus`),
and what PySyncObj's failure codes mean for a command that was not applied."""
from __future__ import annotations

from pysyncobj import FAIL_REASON

_REASONS = {value: name.lower() for name, value in vars(FAIL_REASON).items() if name.isupper()}
# After these failures the command may still be in some leader's log and commit.
MAYBE_APPLIED = {FAIL_REASON.LEADER_CHANGED, FAIL_REASON.UNKNOWN_OUTCOME}


def failure_reason(error: int) -> str:
    """PySyncObj's failure code by name ("leader_changed", "request_denied"...), as
    CommitError.reason reports it; the number itself for a code it does not name."""
    return _REASONS.get(error, str(error))


class CommitError(Exception):
    """A command was not applied. `definite` tells whether it certainly never will be."""

    def __init__(self, reason: str, definite: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.definite = definite


class MembershipRefused(Exception):
    """A membership change was refused and nothing changed. `reason` says why, `kind` is
    one of "not_leader" (ask the leader), "busy" (another change is in flight), "quorum"
    (the group would be left without a majority), "unknown" (no such member) or "conflict"
    (the id is a member at another address)."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class BindFailed(Exception):
    """This member could not listen on its Raft address (`address`); `reason` says why
    (usually another process holds the port). Nothing was started; fix it and start again."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"cannot listen for Raft on {address}: {reason}")
        self.address = address
        self.reason = reason


class ReadRefused(Exception):
    """This member cannot serve a linearizable read now (not the leader, or it could not
    confirm its leadership in time). Ask the leader; retrying later is always safe."""
