"""Membership changes inside simulator schedules (tests/sim/schedule.py), done Bazar's way.

Bazar changes a group one member at a time, through the leader, after the checks of
`consensus.membership.MembershipChanges._check_change` (only the leader; nothing while
another change is in flight or before the leader's first entry of its term has applied;
a majority of the new group in touch with the leader), then PySyncObj's own
`addNodeToCluster` / `removeNodeFromCluster`. The steps run those very checks (through
`SimMember`, a MembershipChanges over a simulated replica) and then PySyncObj's calls.
Each step is an operator's `bazar member` command; it goes on while the group runs
adversarial rounds (`Simulation.storm_step`, drawn from the step's seed, up to ROUNDS)
until it has committed; a command refused as "busy" or without a leader is asked again
after every round, one refused otherwise or failed at most ATTEMPTS times, and one not
done within its step is asked again between later steps (commands are idempotent, so an
attempt whose leader died is simply asked again). One command at a time:

  ("add", start, seed)         a fresh, empty replica joins (named n<k>, a name never
                               used before), started with the new configuration at once
                               (start=1, as tests/sim/test_membership.py does) or, as
                               docs/deploy.md says (`bazar member add`, then `bazar
                               node`), once the change has committed (start=0; a
                               `restart` step may start it earlier)
  ("remove", i, stop, seed)    the leader removes its follower i (modulo their number,
                               newest first; a crashed one too, "replacing a dead
                               replica"); once that has committed the replica's process
                               is stopped for good (stop=1, the documented procedure) or
                               left running (stop=0: it hears from nobody any more)
  ("replace", i, start, seed)  remove follower i (stopped once that has committed), then
                               add a fresh replica as "add" does (docs/deploy.md,
                               "Replacing a dead replica")

The leader itself is never removed (Bazar hands leadership over first; not modelled:
asked again once another replica leads). A group of 2 tolerates no failure, so the
operator does not shrink a group holding a damaged disk to 2, and `corrupt` damages a
disk only while no replica counts or has counted fewer than 3 voters (`tolerates_damage`).

`interleave(seed, steps)` adds 1 to 6 such steps to a share (SHARE) of the generated
schedules, from a random stream of its own: the schedules it leaves alone are exactly
those drawn before membership steps existed, so schedule numbers recorded earlier replay
the same with `generate(..., membership=False)` (`python -m tests.sim.run --replay N
--no-membership`).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from pysyncobj import FAIL_REASON

from bazar.consensus import raft_fixes
from bazar.consensus.errors import MembershipRefused
from bazar.consensus.membership import MembershipChanges
from tests.sim.reads import FOLLOWER, _patched

KINDS = ("add", "remove", "replace")

# Share of generated schedules that get membership steps, and how many changes each.
SHARE = 0.4
CHANGES = (1, 6)


class _Addressed:
    """A simulated node as `MembershipChanges` sees members: by Raft address (the sim's
    nodes are named by id; a TCPNode's id is its address)."""

    def __init__(self, node) -> None:
        self.node, self.address = node, node.id


class _SimSync:
    """A SyncObj seen through `_Addressed` nodes; everything else is the replica's own."""

    def __init__(self, obj) -> None:
        self._obj = obj

    def __getattr__(self, name):
        return getattr(self._obj, name)

    @property
    def selfNode(self):
        return _Addressed(self._obj.selfNode)

    @property
    def otherNodes(self):
        return [_Addressed(node) for node in self._obj.otherNodes]

    def isNodeConnected(self, node) -> bool:
        return self._obj.isNodeConnected(node.node)


class _NoDirectory:
    """Bazar's member directory (addresses) is not simulated: no member is known by it, so
    the checks go by the Raft configuration alone, as for a member the directory lacks."""

    def get(self, member_id):
        return None


class SimMember(MembershipChanges):
    """Bazar's membership checks over one incarnation of a simulated replica."""

    def __init__(self, obj) -> None:
        super().__init__()
        self.syncobj = _SimSync(obj)
        self.directory = _NoDirectory()

    @property
    def is_leader(self) -> bool:
        return self.syncobj._isLeader()

    def hand_off(self, timeout: float) -> bool:   # the steps never remove the leader itself
        raise AssertionError("a step asked the leader to remove itself")


@dataclass
class Request:
    """One `bazar member` command: asked, and asked again (it is idempotent) until it has
    committed or the operator gives up after ATTEMPTS refusals or failures."""

    op: str                  # "add" or "remove"
    pick: int = 0            # remove: which follower (resolved when first asked)
    start: bool = True       # add: start the new replica at once (else once committed)
    stop: bool = True        # remove: stop the removed replica once committed
    then_add: bool | None = None   # replace: the add that follows (its start flag)
    target: str | None = None
    asked: tuple | None = None     # (leader, incarnation, SimMember) it was last asked of
    attempts: int = 0


ATTEMPTS = 12
ROUNDS = 40          # rounds of a membership step (a command's wait for its commit)


@dataclass
class Membership:
    """The operator's commands in one simulation: at most one change asked at a time."""

    members: dict = field(default_factory=dict)      # (replica, incarnation) -> SimMember
    queue: list = field(default_factory=list)        # Requests not yet done, first = current
    outcomes: list = field(default_factory=list)     # (Request, FAIL_REASON) from callbacks
    removed: set = field(default_factory=set)        # removals committed and stopped for good
    refused: list = field(default_factory=list)      # why changes were refused (for reports)


def state(sim) -> Membership:
    if getattr(sim, "membership", None) is None:
        sim.membership = Membership()
    return sim.membership


def _member(sim, name: str) -> SimMember:
    members = state(sim).members
    key = (name, sim.network.life.get(name))
    if key not in members:
        members[key] = SimMember(sim.replicas[name].obj)
    return members[key]


def _voters(sim, name: str) -> list[str]:
    obj = sim.replicas[name].obj
    return sorted({node.id for node in obj.otherNodes} | {name}, key=_age)


def _age(name: str) -> int:
    return int(name[1:])


def _ask(sim, request: Request) -> None:
    """Ask the current leader for `request`, as `change_membership` does: its checks, then
    (unless the configuration already says so: the change is idempotent) PySyncObj's call
    with the in-flight flag set until the callback."""
    ms = state(sim)
    leader = sim.leader()
    if leader is None:
        ms.refused.append(f"{request.op}: no leader")   # asked again at the next step
        return
    voters = _voters(sim, leader)
    if request.target is None:
        if request.op == "add":
            request.target = f"n{len(sim.names) + 1}"
            # A replica that never ran: `restart` (a step, the end's heal, or the committed
            # change) starts it with the configuration its operator gave it.
            sim.names.append(request.target)
            sim.initial[request.target] = voters + [request.target]
            sim.crashed.add(request.target)
        else:
            followers = [n for n in reversed(voters) if n != leader]   # newest first
            if not followers:
                request.attempts += 1
                return
            request.target = followers[request.pick % len(followers)]
    if request.target == leader:
        # Bazar's leader hands leadership over first (`hand_off`), which the simulation
        # does not model: asked again once another replica leads.
        request.attempts += 1
        return
    member = _member(sim, leader)
    try:
        # As `change_membership`: no change may be in flight before the configuration is
        # taken as the outcome (a removal appended but not committed already leaves the
        # node out of the leader's configuration: schedule 202612071722013356 took that for
        # done, stopped n1 for good, and the removal was then lost with its leader).
        member._check_none_in_flight()
    except MembershipRefused as refused:
        ms.refused.append(f"{request.op} {request.target} at {leader}: {refused}")
        return
    if (request.target in voters) == (request.op == "add"):
        _done(sim, request)              # already so (an earlier attempt committed)
        return
    if request.op == "remove" and len(voters) <= 3 and sim.damaged:
        # Nor does the operator shrink to a group of 2 one holding a damaged disk (see
        # `tolerates_damage`): the command is given up.
        request.attempts = ATTEMPTS
        ms.refused.append(f"remove {request.target}: a group of 2 would hold a damaged replica")
        return
    try:
        member._check_change({"op": request.op, "id": request.target, "raft": request.target})
    except MembershipRefused as refused:
        if refused.kind != "busy":     # "busy": try again in a moment (not counted)
            request.attempts += 1
        ms.refused.append(f"{request.op} {request.target} at {leader}: {refused}")
        return

    def done(_result, error, member=member, request=request):
        member._voter_change_in_flight = False
        ms.outcomes.append((request, error))

    member._voter_change_in_flight = True
    request.asked = (leader, sim.network.life.get(leader), member)
    obj = sim.replicas[leader].obj
    (obj.addNodeToCluster if request.op == "add" else obj.removeNodeFromCluster)(request.target, callback=done)
    sim.events.append(f"{leader} asked to {request.op} {request.target}")
    if request.op == "add" and request.start and request.target in sim.crashed:
        sim.restart(request.target)


def _done(sim, request: Request) -> None:
    """The change has committed: what the operator does next."""
    ms = state(sim)
    ms.queue.remove(request)
    sim.events.append(f"{request.op} {request.target} committed")
    if request.op == "add":
        if request.target in sim.crashed and request.target not in sim.refused:
            sim.restart(request.target)   # `bazar node`, once `member add` returned
        return
    ms.removed.add(request.target)
    if request.stop:
        if request.target in sim.replicas:
            sim.crash(request.target)
        sim.crashed.discard(request.target)   # never started again
    if request.then_add is not None:
        ms.queue.insert(0, Request("add", start=request.then_add))


def _waiting(sim, request: Request) -> bool:
    """Whether the command still waits for its answer: asked of a leader whose process
    runs and has not answered (a command whose leader died times out, and is asked again)."""
    if request.asked is None:
        return False
    leader, life, member = request.asked
    if member._voter_change_in_flight and leader in sim.replicas and sim.network.life.get(leader) == life:
        return True
    request.asked = None
    return False


def apply(sim, kind: str, args: list) -> None:
    """One membership step (see the module doc): the operator's command, which goes on
    while the group runs adversarial rounds (`Simulation.storm_step`, drawn from the
    step's seed) until it is done or ROUNDS have passed; a command not done by then is
    asked again between later steps."""
    if kind == "add":
        request = Request("add", start=bool(args[0]))
    elif kind == "remove":
        request = Request("remove", pick=args[0], stop=bool(args[1]))
    elif kind == "replace":
        request = Request("remove", pick=args[0], then_add=bool(args[1]))
    else:
        raise ValueError(f"unknown step {kind!r}")
    ms = state(sim)
    ms.queue.append(request)
    after_step(sim)
    rng = random.Random(args[-1])
    hold = rng.choice((0.0, 0.0, 0.05))
    for _ in range(ROUNDS):
        if not ms.queue:
            break
        sim.storm_step(rng, hold=hold)
        after_step(sim)


def after_step(sim) -> None:
    """Between steps, the operator reads the answers and goes on: a committed change is
    followed through (`_done`), a failed or refused one asked again, the next one asked."""
    ms = state(sim)
    outcomes, ms.outcomes = ms.outcomes, []
    for request, error in outcomes:
        if request not in ms.queue:
            continue
        request.asked = None
        if error == FAIL_REASON.SUCCESS:
            _done(sim, request)
        else:
            request.attempts += 1
            sim.events.append(f"{request.op} {request.target} failed ({error})")
    while ms.queue and not _waiting(sim, ms.queue[0]):
        request = ms.queue[0]
        if request.attempts >= ATTEMPTS:
            ms.queue.pop(0)              # the operator gives up on it
            continue
        _ask(sim, request)
        if request in ms.queue:
            break                        # asked, or refused: asked again after the next step


def restartable(sim, name: str) -> bool:
    """Whether a crashed replica may be started again: not once its removal committed and
    its process was stopped for good."""
    return name not in state(sim).removed or name in sim.replicas


def members(sim) -> list[str] | None:
    """The final members: the configuration of the leader (None without one)."""
    leader = sim.leader()
    return None if leader is None else _voters(sim, leader)


def draw_step(rng: random.Random, kind: str) -> tuple:
    seed = rng.randint(0, 2 ** 32 - 1)
    if kind == "add":
        return (kind, rng.randint(0, 1), seed)
    if kind == "remove":
        return (kind, rng.randint(0, 4), int(rng.random() < 0.8), seed)
    if kind == "replace":
        return (kind, rng.randint(0, 4), rng.randint(0, 1), seed)
    raise ValueError(kind)


def interleave(seed: int, steps: list) -> list:
    """`steps` with membership steps added at random places, for a share (SHARE) of seeds;
    drawn from a stream of their own, so the other seeds' schedules are unchanged."""
    rng = random.Random(f"membership {seed}")
    if rng.random() >= SHARE:
        return steps
    steps = list(steps)
    for _ in range(rng.randint(*CHANGES)):
        kind = rng.choices(KINDS, (4, 3, 3))[0]
        steps.insert(rng.randint(0, len(steps)), draw_step(rng, kind))
    return steps


def before_heal(sim) -> None:
    """Before the end's heal, which restarts every crashed replica: those removed for good
    stay down, and a replica whose disk was damaged gets a cluster file naming the current
    members (docs/deploy.md): started from its first file, it cannot be reached by a
    leader added since (PySyncObj refuses connections from nodes it does not know), and
    with a repaired journal it may not campaign, so it would never catch up (schedule
    1001121 of `python -m tests.sim.run`; a running one is restarted with it). A frontend's
    follower that knows no current member is restarted with the current file."""
    for name in [n for n in sim.crashed if not restartable(sim, n)]:
        sim.crashed.discard(name)
    current = [n for n in sim.names if n not in state(sim).removed]
    # A frontend whose follower knows only replicas removed since (it missed every change
    # while cut off) has nobody to learn the leader from: the operator restarts it with the
    # current file (docs/deploy.md), as the follower step does (schedule 202612071722015411).
    transport = sim.network.transports.get(FOLLOWER)
    if transport is not None and not set(transport.nodes) & set(current):
        sim.add_follower()
    for name in sorted(sim.damaged):
        if name in state(sim).removed or set(current) <= set(sim.initial.get(name, sim.names)):
            continue
        sim.initial[name] = sorted(set(sim.initial.get(name, sim.names)) | set(current), key=_age)
        if name in sim.replicas:
            sim.crash(name)


def tolerates_damage(sim) -> bool:
    """Whether damaging a disk (`corrupt`) stays within what Raft tolerates: no replica
    counts, or has ever counted, fewer than 3 voters. A group of 2 tolerates no failure, and
    a damaged journal is one that outlasts a restart (its repaired replica may not vote
    until a leader has caught it up, and the one other voter cannot be elected without its
    vote: schedule 1001550). Ever, not just now: a replica that is down comes back with the
    configuration of its disk, which it held once (schedule 787650000271 damaged a disk
    while both members of a group of 2 were down, when only running replicas were asked)."""
    smallest = sim.network.smallest_group
    return (smallest is None or smallest >= 3) and all(len(r.obj.otherNodes) >= 2 for r in sim.replicas.values())


# ------------------------------------------------------------------ mutations

def _configuration_of_the_log_end(self, index):
    """PySyncObj's snapshot configuration: the one of the log's end, whatever `index`."""
    return set(self._SyncObj__otherNodes) | {self._SyncObj__selfNode}


# Bazar's membership rules that are not whole replaced functions, broken one at a time for
# the mutation check (tests/sim/mutation.py), as tests.sim.reads.MUTATIONS breaks read rules.
MUTATIONS = {
    "snapshot_configuration_of_the_log_end":
        lambda: _patched(raft_fixes._SyncObj, "configuration_at", _configuration_of_the_log_end),
    # A replica never learns a leader its configuration does not name (raft_fixes.learn_leader):
    # PySyncObj's transport knows only the configuration's nodes.
    "leaders_outside_the_configuration_unknown":
        lambda: _patched(raft_fixes._SyncObj, "learn_leader", lambda self, node, message: None),
    # PySyncObj's rule: any vote request of a newer term is heard (raft_fixes.ignores_vote_request).
    "vote_requests_of_disruptive_candidates_heard":
        lambda: _patched(raft_fixes._SyncObj, "ignores_vote_request", lambda self, node, message: False),
}

