"""Schedules for the simulator: what a step is, how a schedule is played, and how one is drawn.

A schedule is `(size, steps)` or `(size, steps, fork_writer, compaction)`: a group of
`size` replicas (3 or 5), with the snapshot writer as an actor of its own or not,
a snapshot every `compaction` entries (default 40), and a list of steps, each a tuple of plain numbers (so it can be
printed, kept in test_found_schedules.py and replayed exactly):

  ("run", seed, rounds)       rounds of `Simulation.chaotic_step` (messages in order,
                              overtaking, twice, late, lost)
  ("storm", seed, rounds)     rounds of `Simulation.storm_step` (the same, plus messages
                              held back and released much later, snapshot writers finishing;
                              how often each, drawn from seed for the whole step)
  ("write", i, n)             n commands submitted at replica i
  ("crash", i)                graceful crash (SIGTERM: `_doDestroy` syncs and saves)
  ("kill", i, mode, seed)     hard crash: mode 0 SIGKILL, 1 power cut, 2 power cut with a
                              torn tail drawn from seed
  ("doom", i, sends, power)   replica i dies (SIGKILL, or a power cut if power) right after
                              its `sends`-th next message, in the middle of what it does
  ("restart", i[, finishes])  start a crashed replica; its old snapshot writer, if still
                              running, first renames its file (finishes=1, the default) or dies
  ("partition", mask)         replicas whose bit is set on one side, the rest on the other
  ("heal",)                   every link back
  ("reset", a, b)             the connection a-b cut (its messages may arrive later)
  ("hold", kind, percent, seed)  hold back that share of the waiting messages of a kind:
                              0 any, 1 append acknowledgments (next_node_idx), 2 votes,
                              3 append_entries, 4 acknowledgments and votes
  ("release", seed, count)    deliver `count` held messages, in an order drawn from seed
  ("writer", position)        one running snapshot writer renames its file into place
  ("corrupt", i, seed)        flip a bit of a durable journal record of crashed replica i
                              (one replica per schedule: Raft tolerates that, not more; and
                              only while every running replica counts 3 voters or more)
  ("add", start, seed)        membership changes (tests/sim/membership_steps.py), each an
  ("remove", i, stop, seed)   operator's command through the leader, after Bazar's checks,
  ("replace", i, start, seed) one at a time, going on over storm rounds drawn from seed
                              until committed: a fresh replica added (started at once, or
                              once committed); follower i removed (its process stopped once
                              committed, or left running); follower i removed, then a fresh
                              one added. `generate` adds 1 to 6 of them to a share of schedules

Reads (tests/sim/reads.py: Bazar's own read index and in-touch rule run in every replica):

  ("read", i, n)              n read-index reads queued at replica i, answered on its later
                              ticks only through the leader's read index rule; each answer
                              must hold every write acknowledged before the read was queued
  ("local", i)                a local read at replica i, answered only while it counts itself
                              in touch; it must hold every write acknowledged more than the
                              bound (1.0 s of virtual time, plus the measured network delays the
                              rule leaves uncounted) before
  ("reads", seed, percent)    from now on, before each tick a replica makes, with that
                              probability (drawn from seed) one read of each kind there
  ("follower",)               the non-voting follower (the frontend's) joins, or restarts empty;
                              it keeps to its leader's side of partitions and serves local reads
  ("depose", seed, rounds)    a partition that leaves the current leader on the minority side
                              (alone or with others, drawn from seed), then that many rounds of
                              `ReadSimulation.calm_step` under it (5-50 ms each: the other side
                              elects a leader and acknowledges writes within the old leader's
                              fallback timeout): until it notices, it is a deposed leader that
                              may still answer reads and heartbeat its followers

Besides these, every live replica that counts itself in touch is checked as a local read
after every step and every round, and at the end every answer must be a prefix of the
converged state (a read sees applied, so committed, entries only). Read steps are drawn
apart from the others (`READ_WEIGHTS`, from a second generator seeded by the schedule's
seed) and spliced in, so that the other steps of a seed are the ones drawn before reads
existed.

`play` runs a schedule, checking Raft's safety properties after every step
(tests/sim/harness.py), then heals everything (a replica that refused to start
on damaged data is recovered the operator's way) and requires every replica of the
final configuration to converge on one state holding every acknowledged write. Last,
the end's partial partition (`cut_one_follower_off`): one follower of the converged group
is cut off from the leader alone, and the leader must keep its term and go on committing
(Raft thesis §4.2.3: the others, who still hear it, ignore the follower's vote requests).
`generate(seed)` draws a schedule; the same seed gives the same schedule, and `play`
replays it exactly.
"""
from __future__ import annotations

import random

from tests.sim import membership_steps
from tests.sim.harness import Simulation, UnknownLeader
from tests.sim.reads import ReadSimulation

HOLD_KINDS = {0: (), 1: ("next_node_idx",), 2: ("response_vote",), 3: ("append_entries",),
              4: ("next_node_idx", "response_vote")}


def play(size: int, steps: list, fork_writer: bool = False, compaction: int = 40,
         check_match: bool = True) -> dict:
    """Run one schedule; SafetyViolation (or any exception from PySyncObj) fails it.
    Returns counts: writes acknowledged, messages delivered, starts refused.
    `check_match` False leaves out the match-index check (World.check_match_indexes), to
    see what a lying match index goes on to break."""
    with ReadSimulation(size=size, compaction_entries=compaction, payload=64, fork_writer=fork_writer) as sim:
        sim.world.check_match = check_match
        names = sim.names
        corrupted: set[str] = set()
        try:
            assert sim.run_until(lambda: sim.leader() is not None, seconds=10)
            for kind, *args in steps:
                apply(sim, corrupted, kind, args)
                sim.observe()
                membership_steps.after_step(sim)
            refused = len(sim.refused)
            membership_steps.before_heal(sim)
            sim.heal_everything()
            if not sim.run_until(sim.converged, seconds=60):
                stuck = sim.behind_an_unknown_leader()
                if stuck:
                    raise UnknownLeader(f"{', '.join(stuck)} cannot reach leader {sim.leader()}, "
                                        f"which its configuration does not name")
                raise AssertionError("the healed group did not converge")
            for name in membership_steps.members(sim):
                assert sim.lost_acknowledged(name) == [], f"{name} lost acknowledged writes"
            sim.finish_reads()
            assert sim.world.violations == []
            cut_one_follower_off(sim, random.Random(sim.network.delivered))
        except BaseException as error:
            error.events = list(sim.events)   # what the faults were, for the report
            raise
        return {"acknowledged": len(sim.world.acknowledged), "messages": sim.network.delivered,
                "refused": refused, "reads": dict(sim.stats)}


# The end's partial partition: how long the link stays down (virtual seconds, several
# election timeouts), and how often the leader is written to meanwhile.
CUT_SECONDS, CUT_WRITE_EVERY = 1.0, 0.2


def cut_one_follower_off(sim: Simulation, rng: random.Random) -> None:
    """After the healed group has converged: one follower of the final configuration
    (drawn from `rng`) is cut off from the leader alone, and the group runs calmly for
    CUT_SECONDS while writes go to the leader. The follower hears no leader, times out
    and asks the others for votes in newer and newer terms; they still hear the leader,
    so they must ignore it (Raft thesis §4.2.3): the leader keeps its term and goes on
    committing, and every property checked after each round still holds. Skipped where
    a majority would not remain (fewer than 3 voters)."""
    def settled() -> bool:
        """Every voter follows one leader in one term (a converged group may still hold a
        replica that campaigns, e.g. one that timed out just before: schedule
        2026120719001576)."""
        leader, voters = sim.leader(), membership_steps.members(sim)
        if leader is None or any(n not in sim.replicas for n in voters):
            return False
        term = sim.replicas[leader].obj.raftCurrentTerm
        return all(sim.replicas[n].obj.raftCurrentTerm == term
                   and getattr(sim.replicas[n].obj._getLeader(), "id", None) == leader for n in voters)

    if not sim.run_until(settled, seconds=10):
        raise AssertionError("the converged group did not settle on one leader in one term")
    leader = sim.leader()
    voters = membership_steps.members(sim)
    if len(voters) < 3:
        return
    follower = rng.choice([n for n in voters if n != leader])
    term = sim.replicas[leader].obj.raftCurrentTerm
    acknowledged = len(sim.world.acknowledged)
    sim.events.append(f"the end: {follower} cut off from leader {leader} alone")
    sim.network.cut_link(leader, follower)
    deadline, next_write = sim.clock.now + CUT_SECONDS, sim.clock.now
    while sim.clock.now < deadline:
        if sim.clock.now >= next_write and leader in sim.replicas:
            sim.write(leader, 1)
            next_write += CUT_WRITE_EVERY
        sim.step(0.025)
        now = sim.leader()
        if now != leader or sim.replicas[leader].obj.raftCurrentTerm != term:
            raise AssertionError(
                f"{follower}, cut off from leader {leader} alone, deposed it: the leader is now "
                f"{now} in term {sim.replicas[now].obj.raftCurrentTerm if now else '-'} (was {term})")
    if len(sim.world.acknowledged) <= acknowledged:
        raise AssertionError(f"leader {leader} committed nothing while {follower} was cut off from it")
    assert sim.world.violations == []


def apply(sim: Simulation, corrupted: set, kind: str, args: list) -> None:
    """Apply one step (see the module doc); a step that does not apply now does nothing."""
    names, size = sim.names, len(sim.names)

    def replica(i: int) -> str:
        return names[i % size]

    if kind == "run":
        rng = random.Random(args[0])
        for _ in range(args[1]):
            sim.chaotic_step(rng)
    elif kind == "storm":
        rng = random.Random(args[0])
        hold = rng.choice((0.0, 0.07, 0.15))
        writers = {name: rng.choice((0.0, 0.1, 0.5, 1.0)) for name in sim.names}
        for _ in range(args[1]):
            sim.storm_step(rng, hold=hold, writers=writers)
    elif kind == "write":
        if replica(args[0]) in sim.replicas:
            sim.write(replica(args[0]), args[1])
    elif kind in ("crash", "kill"):
        name = replica(args[0])
        if name in sim.replicas and len(sim.replicas) > 1:
            if kind == "crash":
                sim.crash(name)
            else:
                mode, seed = args[1], args[2]
                sim.kill(name, power=mode > 0, tear=random.Random(seed) if mode == 2 else None)
    elif kind == "doom":
        name = replica(args[0])
        if name in sim.replicas and len(sim.replicas) > 1:
            sim.network.doom(name, args[1], power=bool(args[2]))
    elif kind == "restart":
        name = replica(args[0])
        if name in sim.crashed and membership_steps.restartable(sim, name):
            sim.restart(name, writer_finishes=bool(args[1]) if len(args) > 1 else True)
    elif kind == "partition":
        side = {n for i, n in enumerate(names) if args[0] >> i & 1}
        sim.network.partition(side, set(names) - side)
    elif kind == "heal":
        sim.network.heal()
    elif kind == "reset":
        a, b = replica(args[0]), replica(args[1])
        if a != b:
            sim.network.reset(a, b)
    elif kind == "hold":
        sim.network.hold_kind(HOLD_KINDS[args[0] % len(HOLD_KINDS)], random.Random(args[2]), args[1] / 100)
    elif kind == "release":
        rng = random.Random(args[0])
        for _ in range(args[1]):
            if not sim.network.held:
                break
            sim.network.release(rng.randrange(len(sim.network.held)))
    elif kind == "writer":
        sim.finish_writer(args[0])
    elif kind in membership_steps.KINDS:
        membership_steps.apply(sim, kind, args)
    elif kind == "corrupt":
        name = replica(args[0])
        if name in sim.crashed and not corrupted - {name} and membership_steps.tolerates_damage(sim):
            if sim.corrupt(name, random.Random(args[1])) is not None:
                corrupted.add(name)
    elif kind == "read":
        sim.read(replica(args[0]), args[1])
    elif kind == "local":
        sim.local_read(replica(args[0]))
    elif kind == "reads":
        sim.read_in_background(args[0], args[1])
    elif kind == "follower":
        sim.add_follower()
    elif kind == "depose":
        leader = sim.leader()
        if leader is not None:
            rng = random.Random(args[0])
            others = sorted(set(names) - {leader})
            side = {leader} | set(rng.sample(others, rng.randint(0, (size - 1) // 2 - 1)))
            sim.network.partition(side, set(names) - side)
            for _ in range(args[1]):
                sim.calm_step(rng)
    else:
        raise ValueError(f"unknown step {kind!r}")


# How often each kind of step is drawn (relative weights), for all faults at once.
WEIGHTS = {"storm": 24, "run": 4, "write": 10, "hold": 10, "release": 8, "partition": 8,
           "heal": 6, "reset": 3, "crash": 3, "kill": 7, "restart": 9, "writer": 5, "corrupt": 1,
           "doom": 3}

# A schedule draws one focus, so that each kind of fault also gets schedules of its own
# (with everything at once, the first violation found hides the rarer ones).
FOCUS = {
    "messages": {"storm": 24, "write": 10, "hold": 12, "release": 10, "partition": 10, "heal": 8,
                 "reset": 3},
    "snapshots": {"storm": 20, "write": 12, "writer": 8, "partition": 10, "heal": 6, "crash": 4,
                  "kill": 4, "restart": 10},
    "disks": {"storm": 20, "write": 10, "kill": 10, "crash": 3, "restart": 12, "corrupt": 3,
              "partition": 5, "heal": 5, "writer": 4, "doom": 8},
    "crash points": {"storm": 20, "write": 10, "doom": 12, "restart": 12, "partition": 5, "heal": 5},
    "everything": WEIGHTS,
}

# Read steps, drawn apart (see the module doc): how many a schedule gets, and of which kind.
READ_WEIGHTS = {"read": 4, "local": 3, "follower": 2, "depose": 4}


def draw_step(rng: random.Random, kind: str) -> tuple:
    big = 2 ** 32 - 1
    if kind in ("storm", "run"):
        return (kind, rng.randint(0, big), rng.randint(1, 15))
    if kind == "write":
        return (kind, rng.randint(0, 4), rng.randint(1, 25))
    if kind == "hold":
        return (kind, rng.randint(0, 4), rng.choice((30, 60, 100)), rng.randint(0, big))
    if kind == "release":
        return (kind, rng.randint(0, big), rng.randint(1, 30))
    if kind == "partition":
        return (kind, rng.randint(1, 30))
    if kind == "heal":
        return (kind,)
    if kind == "reset":
        return (kind, rng.randint(0, 4), rng.randint(0, 4))
    if kind == "crash":
        return (kind, rng.randint(0, 4))
    if kind == "kill":
        return (kind, rng.randint(0, 4), rng.randint(0, 2), rng.randint(0, big))
    if kind == "restart":
        return (kind, rng.randint(0, 4), rng.randint(0, 1))
    if kind == "doom":
        return (kind, rng.randint(0, 4), rng.randint(1, 40), rng.randint(0, 1))
    if kind == "writer":
        return (kind, rng.randint(0, 4))
    if kind == "corrupt":
        return (kind, rng.randint(0, 4), rng.randint(0, big))
    if kind in membership_steps.KINDS:
        return membership_steps.draw_step(rng, kind)
    if kind == "read":
        return (kind, rng.randint(0, 4), rng.randint(1, 5))
    if kind == "local":
        return (kind, rng.randint(0, 4))
    if kind == "reads":
        return (kind, rng.randint(0, big), rng.choice((5, 20, 50)))
    if kind == "follower":
        return (kind,)
    if kind == "depose":
        return (kind, rng.randint(0, big), rng.randint(20, 150))
    raise ValueError(kind)


def splice_reads(seed: int, steps: list) -> list:
    """`steps` with read steps inserted, drawn from their own generator (seed-derived): most
    schedules read in the background from the start, half have the non-voting follower from
    the start, and most get 1 to 8 more read steps, each at a random place."""
    rng = random.Random(f"reads {seed}")
    if rng.random() < 0.1:
        return steps
    steps = list(steps)
    kinds = rng.choices(list(READ_WEIGHTS), list(READ_WEIGHTS.values()), k=rng.randint(1, 8))
    for kind in kinds:
        steps.insert(rng.randint(0, len(steps)), draw_step(rng, kind))
    if rng.random() < 0.5:
        steps.insert(0, draw_step(rng, "follower"))
    if rng.random() < 0.8:
        steps.insert(0, draw_step(rng, "reads"))
    return steps


def generate(seed: int, kinds: dict[str, int] | None = None,
             size: int | None = None, compaction: int | None = None,
             membership: bool = True) -> tuple[int, list, bool, int]:
    """The schedule of `seed`: (size, steps, fork_writer, compaction), 3 or 5 replicas (or
    `size`), 3 to 40 steps drawn with `kinds` as relative weights (default: one FOCUS drawn
    from the seed), a snapshot every 10, 20 or 40 entries (or `compaction`); then, unless
    `membership` is False or `kinds` is given, membership steps added to a share of them
    (`membership_steps.interleave`, a random stream of its own: with `membership=False`,
    or for the seeds it leaves alone, the schedule is the one drawn before they existed)."""
    rng = random.Random(seed)
    focus = FOCUS[rng.choice(sorted(FOCUS))]
    weights = focus if kinds is None else kinds
    population, cumulative = list(weights), list(weights.values())
    drawn = rng.choice((3, 5))
    size = size or drawn
    steps = [draw_step(rng, kind) for kind in rng.choices(population, cumulative, k=rng.randint(3, 40))]
    drawn_compaction = rng.choice((10, 20, 40))
    if membership and kinds is None:
        steps = membership_steps.interleave(seed, steps)
    if kinds is None:
        steps = splice_reads(seed, steps)
    return size, steps, True, compaction or drawn_compaction
