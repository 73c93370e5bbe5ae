"""Mutation check: does the simulator notice when one of Bazar's corrections is taken away?

For each correction `consensus.patching.applied()` lists (every PySyncObj function
Bazar replaced), `hunt` puts PySyncObj's own function back (`patching.original`, as
`harness.original_follower` does for the follower), draws schedules from a seed and
plays them until one fails. A failure counts only if the same schedule passes with
every correction in place: the branch may have bugs of its own, and a schedule that
fails either way says nothing about the reverted correction.

    python -m tests.sim.mutation --schedules 400 --seed 1        # the table, every correction
    python -m tests.sim.mutation --only serialize --schedules 2000

Bazar's own read rules are not PySyncObj corrections, but are broken the same way, one at a
time (`tests.sim.reads.MUTATIONS`: `in_touch_from_last_heard`, `read_index_without_step_3`),
and listed after the corrections.

Some corrections are outside what the simulator models and cannot be caught here:
PySyncObj's TCP framing (`_TcpConnection__processRead`, `__processParseMessage`:
the simulated network hands over whole messages, never bytes), its listener's queue
(`TcpServer.bind`: the simulated network has no sockets) and a leader's fsync
ordering (`_SyncObj__sendAppendEntries`: it changes when the leader's fsync runs, not
whether it runs before a commit, so nothing observable to Raft's properties changes).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
from functools import partial
import logging
import time
import traceback
from pathlib import Path

from bazar.consensus import patching
from tests.sim import membership_steps, reads
from tests.sim.run import each, schedule_seeds
from tests.sim.schedule import generate, play

# Bazar's own rules that are not whole replaced functions, broken the same way.
MUTATIONS = {**reads.MUTATIONS, **membership_steps.MUTATIONS}


def short_name(name: str) -> str:
    """`_SyncObj__onMessageReceived` -> `onMessageReceived`."""
    return name.split("__", 1)[-1] if "__" in name else name


def _owner(patch: patching.Patch):
    path = patch.owner.lstrip(".")
    try:
        return importlib.import_module(path)          # a module-level function (createJournal)
    except ModuleNotFoundError:
        module, cls = path.rsplit(".", 1)
        return getattr(importlib.import_module(module), cls)


def corrections() -> dict[str, tuple]:
    """Short name -> (owner, attribute, Patch) of every correction installed."""
    return {short_name(p.name): (_owner(p), p.name, p) for p in patching.applied()}


@contextlib.contextmanager
def reverted(name: str):
    """Run the block with correction `name` (a short name) replaced by PySyncObj's own code,
    or with one of Bazar's own read-side rules broken (`tests.sim.reads.MUTATIONS`)."""
    if name in MUTATIONS:
        with MUTATIONS[name]():
            yield
        return
    owner, attribute, patch = corrections()[name]
    fixed = owner.__dict__[attribute] if attribute in vars(owner) else getattr(owner, attribute)
    setattr(owner, attribute, patch.original)
    try:
        yield
    finally:
        setattr(owner, attribute, fixed)


def _fails(schedule) -> str | None:
    """What went wrong with `schedule` (a violated property, lost writes, no convergence, or
    an exception raised inside PySyncObj or Bazar's consensus code), or None. An exception
    raised by the simulator's own code is its bug, not a catch: raised."""
    try:
        play(*schedule)
        return None
    except AssertionError as error:      # SafetyViolation is one
        return f"{type(error).__name__}: {error}"
    except Exception as error:
        innermost = traceback.extract_tb(error.__traceback__)[-1].filename
        if "/tests/sim/" in innermost:
            raise
        return f"{type(error).__name__} in {Path(innermost).name}: {error}"


def judge(schedule_seed: int, name: str, size: int | None = None) -> tuple[str, str | None]:
    """Schedule `schedule_seed` with correction `name` reverted: ("caught", what failed) if it
    fails and passes with every correction in place, ("confounded", None) if it fails either
    way, ("passed", None) if it passes; ("error", traceback) for a bug of the simulator's own."""
    logging.disable(logging.CRITICAL)
    try:
        schedule = generate(schedule_seed, None, size)
        with reverted(name):
            failure = _fails(schedule)
        if failure is None:
            return "passed", None
        if _fails(schedule) is not None:
            return "confounded", None
        return "caught", failure
    except Exception:
        return "error", traceback.format_exc()


def hunt(name: str, seed: int, schedules: int, seconds: float, size: int | None = None) -> dict:
    """Play schedules of `seed` with correction `name` reverted until one fails that passes
    with it in place, or `schedules`/`seconds` run out. Returns what happened. The schedules
    are judged in worker processes (tests.sim.run.each) and counted in order, so the result
    is the same for any number of them."""
    started, played, confounded = time.monotonic(), 0, 0
    seeds = schedule_seeds(seed, schedules)
    results = each(partial(judge, name=name, size=size), seeds)
    try:
        for schedule_seed, (verdict, detail) in zip(seeds, results):
            if time.monotonic() - started > seconds:
                break
            played += 1
            if verdict == "error":
                raise RuntimeError(f"the simulator failed on schedule {schedule_seed}:\n{detail}")
            confounded += verdict == "confounded"
            if verdict == "caught":
                return {"name": name, "caught": True, "schedules": played, "confounded": confounded,
                        "seconds": time.monotonic() - started, "seed": schedule_seed, "failure": detail}
    finally:
        results.close()
    return {"name": name, "caught": False, "schedules": played, "confounded": confounded,
            "seconds": time.monotonic() - started, "seed": None, "failure": None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--size", type=int, choices=(3, 5))
    parser.add_argument("--only")
    args = parser.parse_args(argv)
    names = [args.only] if args.only else list(corrections()) + list(MUTATIONS)
    print(f"{'correction':28} {'caught':7} {'schedules':>9} {'seconds':>8} {'confounded':>10}  seed / failure")
    for name in names:
        r = hunt(name, args.seed, args.schedules, args.seconds, args.size)
        where = (f"{r['seed']}  {r['failure'][:110]}" if r["caught"] else "-")
        print(f"{name:28} {'yes' if r['caught'] else 'no':7} {r['schedules']:>9} {r['seconds']:>8.1f} "
              f"{r['confounded']:>10}  {where}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
