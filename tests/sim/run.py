"""Run freshly drawn simulator schedules from a seed, and replay or shrink a failing one.

    python -m tests.sim.run --schedules 2000 --seed 17      # draw and play 2000 schedules
    python -m tests.sim.run --schedules 2000                # the same from a random seed (printed)
    python -m tests.sim.run --replay 17000042               # play one schedule again, verbosely
    python -m tests.sim.run --replay 17000042 --shrink      # ... and print a minimal equivalent

Schedule i of seed S is `tests.sim.schedule.generate(S * 10**6 + i)`: the number printed
for a failing schedule replays it exactly (`--replay`), also with the same `--size` and
`--kinds` given. Options:

  --size 3|5          every schedule on that many replicas (default: drawn, 3 or 5)
  --compaction N      a snapshot every N entries (default: drawn, 10, 20 or 40)
  --kinds storm,hold  draw only these step kinds (default: all, schedule.WEIGHTS, with
                      read steps spliced in, read kinds: schedule.READ_WEIGHTS, and
                      membership steps in a share of schedules; add, remove and
                      replace may be named too, weight 5 each)
  --no-membership     no membership steps: the schedule numbers recorded before they
                      existed (tests/sim/test_found_schedules.py) replay as they were
  --no-match-check    leave out the match-index check, to see what a lying match
                      index goes on to break (a Figure 3 property)
  --revert NAME       run with one of Bazar's corrections reverted to PySyncObj's own
                      code, or one of its read rules broken (NAME as tests/sim/mutation.py
                      lists them; see there)
  --stop-after K      stop after K failing schedules (default 1; 0: never stop)

It prints schedules/s, each failure (the violated property, the faults that led
there, and a one-line command to replay it), and exits 1 if any schedule failed.
A failing schedule worth keeping goes into tests/sim/test_found_schedules.py as a
named regression (print it with --replay N --shrink).
"""
from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import random
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial

from tests.sim.schedule import READ_WEIGHTS, WEIGHTS, generate, play

MEMBERSHIP_WEIGHTS = {"add": 5, "remove": 5, "replace": 5}

SEED_STRIDE = 10 ** 6


def schedule_seeds(seed: int, count: int) -> range:
    return range(seed * SEED_STRIDE, seed * SEED_STRIDE + count)


def workers() -> int:
    """How many processes play schedules side by side: one per core (`BAZAR_SIM_WORKERS`
    overrides). Each schedule is independent and seeded, so the outcome is the same for any
    number; only the wall time changes."""
    return max(1, int(os.environ.get("BAZAR_SIM_WORKERS") or os.cpu_count() or 1))


def each(job, items, processes: int | None = None):
    """Yield `job(item)` for every item, in order, computed by `processes` worker processes
    (default `workers()`). Stopping the iteration early stops the workers. `job` must be a
    module-level function (or a partial of one) and its results picklable."""
    items = list(items)
    processes = min(processes or workers(), len(items))
    if processes <= 1:
        yield from map(job, items)
        return
    # forkserver, not fork: the caller (pytest, with threads of earlier tests) is not forked.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.sim.schedule", "tests.sim.reads"])
    with context.Pool(processes) as pool:   # leaving the block terminates the workers
        yield from pool.imap(job, items, chunksize=max(1, min(8, len(items) // (processes * 8))))


@dataclass(frozen=True)
class Failure:
    """How a schedule failed, as a worker process can send it back (an exception may not pickle)."""
    kind: str                  # the exception's class: SafetyViolation, AssertionError, ...
    message: str
    events: tuple[str, ...]    # the notable faults before it (harness.Simulation.events)

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


def play_one(seed: int, kinds=None, size=None, compaction=None, membership=True,
             check_match=True, revert: str | None = None) -> tuple[str, object]:
    """Play schedule `seed` (with correction `revert` taken away, tests/sim/mutation.py):
    ("passed", None) or ("failed", Failure)."""
    from tests.sim.mutation import reverted    # (it imports this module)
    logging.disable(logging.CRITICAL)   # replicas log every refused vote and torn tail
    try:
        with reverted(revert) if revert else nullcontext():
            play(*generate(seed, kinds, size, compaction, membership), check_match=check_match)
    except Exception as error:  # a violation, or an exception out of PySyncObj
        return "failed", Failure(type(error).__name__, str(error), tuple(getattr(error, "events", ())))
    return "passed", None


def run(seeds, size=None, kinds=None, check_match=True, stop_after=1, out=print, compaction=None,
        membership=True, processes: int | None = None, revert: str | None = None) -> dict:
    """Play the schedules of `seeds` (in `processes` worker processes, default one per core);
    return {"played", "seconds", "failures": [(seed, Failure, seconds, played)]}."""
    failures, played, started = [], 0, time.monotonic()
    seeds = list(seeds)
    job = partial(play_one, kinds=kinds, size=size, compaction=compaction, membership=membership,
                  check_match=check_match, revert=revert)
    results = each(job, seeds, processes)
    try:
        for seed, (verdict, detail) in zip(seeds, results):
            played += 1
            if verdict == "failed":
                failures.append((seed, detail, time.monotonic() - started, played))
                if out:
                    out(f"FAILED schedule {seed} (after {played} schedules, "
                        f"{time.monotonic() - started:.1f} s): {detail}")
                    for event in detail.events[-5:]:
                        out(f"    fault: {event}")
                if stop_after and len(failures) >= stop_after:
                    break
    finally:
        results.close()   # stops the workers if the loop ended early
    return {"played": played, "seconds": time.monotonic() - started, "failures": failures}


def shrink(schedule: tuple, fails) -> tuple:
    """A schedule with as few steps as greedy removal finds, for which `fails(schedule)` holds."""
    size, steps, *rest = schedule
    chunk = max(1, len(steps) // 2)
    while chunk >= 1:
        i = 0
        while i < len(steps):
            candidate = steps[:i] + steps[i + chunk:]
            if candidate and fails((size, candidate, *rest)):
                steps = candidate
            else:
                i += chunk
        chunk //= 2
    return (size, steps, *rest)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=500)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--replay", type=int)
    parser.add_argument("--shrink", action="store_true")
    parser.add_argument("--size", type=int, choices=(3, 5))
    parser.add_argument("--compaction", type=int)
    parser.add_argument("--kinds")
    parser.add_argument("--no-membership", action="store_true")
    parser.add_argument("--no-match-check", action="store_true")
    parser.add_argument("--revert")
    parser.add_argument("--stop-after", type=int, default=1)
    args = parser.parse_args(argv)
    known = {**WEIGHTS, **READ_WEIGHTS, **MEMBERSHIP_WEIGHTS}
    kinds = None if not args.kinds else {k: known[k] for k in args.kinds.split(",")}
    membership = not args.no_membership
    check = not args.no_match_check
    extra = "".join([f" --size {args.size}" if args.size else "", f" --kinds {args.kinds}" if args.kinds else "",
                     f" --compaction {args.compaction}" if args.compaction else "",
                     " --no-match-check" if args.no_match_check else "",
                     " --no-membership" if args.no_membership else "",
                     f" --revert {args.revert}" if args.revert else ""])
    if args.replay is not None:
        schedule = generate(args.replay, kinds, args.size, args.compaction, membership)
        print(f"schedule {args.replay}: {schedule!r}")
        outcome = run([args.replay], args.size, kinds, check, compaction=args.compaction,
                      membership=membership, revert=args.revert)
        if outcome["failures"] and args.shrink:
            from tests.sim.mutation import reverted

            def fails(candidate):
                try:
                    logging.disable(logging.CRITICAL)
                    with reverted(args.revert) if args.revert else nullcontext():
                        play(*candidate, check_match=check)
                    return False
                except Exception:
                    return True
                finally:
                    logging.disable(logging.NOTSET)
            print(f"shrunk: {shrink(schedule, fails)!r}")
        print("failed" if outcome["failures"] else "passed")
        return 1 if outcome["failures"] else 0
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10 ** 6)
    print(f"seed {seed}: {args.schedules} schedules in {workers()} processes (python -m tests.sim.run "
          f"--schedules {args.schedules} --seed {seed}{extra})", flush=True)
    outcome = run(schedule_seeds(seed, args.schedules), args.size, kinds, check, args.stop_after,
                  out=lambda line: print(line, flush=True), compaction=args.compaction,
                  membership=membership, revert=args.revert)
    rate = outcome["played"] / max(outcome["seconds"], 1e-9)
    print(f"{outcome['played']} schedules in {outcome['seconds']:.1f} s ({rate:.1f}/s), "
          f"{len(outcome['failures'])} failed")
    for failing, *_ in outcome["failures"]:
        print(f"replay: python -m tests.sim.run --replay {failing}{extra}")
    return 1 if outcome["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
