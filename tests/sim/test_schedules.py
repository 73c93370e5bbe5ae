"""Raft's safety properties on real SyncObj replicas, under generated schedules.

Each schedule (tests/sim/schedule.py) is a list of steps on a simulated group of
3 or 5 replicas under write load: adversarial rounds (messages in order,
overtaking, twice, late, lost, held back across elections and reconnects),
writes at any replica, graceful crashes, SIGKILLs and power cuts (files back to
what was durable, torn tails), restarts, partitions, connection resets, the
forked snapshot writer finishing late, a flipped bit in a durable journal
record, reads (read index, local reads, the non-voting follower, a leader cut off
with a minority: tests/sim/reads.py). After every step the checker (tests/sim/harness.py) asserts election
safety, log matching, leader completeness, state machine safety, that a leader's
match index is true, that a running replica's state never goes back and that a
restart finds what the replica had committed, and that every read answered holds
what it must (tests/sim/reads.py); at the end the network heals and every replica
must reach the same state holding every acknowledged write.

CI plays a fixed set of schedules (the same every run) and a few hundred fresh
ones from a seed it prints; `python -m tests.sim.run --replay N` replays a
failing schedule N, `python -m tests.sim.run --schedules 20000` plays more.
`BAZAR_SIM_SEED` fixes the fresh seed, `BAZAR_SIM_FRESH` their number.
"""
from __future__ import annotations

import pytest

from tests.sim import background
from tests.sim.background import FAST, FIXED, FIXED_SEED, FRESH


def report(outcome: dict, what: str) -> None:
    rate = outcome["played"] / max(outcome["seconds"], 1e-9)
    print(f"\n{what}: {outcome['played']} schedules in {outcome['seconds']:.0f} s ({rate:.1f}/s), "
          f"{len(outcome['failures'])} failed")
    for seed, error, *_ in outcome["failures"]:
        print(f"  schedule {seed}: {error}\n"
              f"  replay: python -m tests.sim.run --replay {seed}")


def _check(outcome: dict, count: int, what: str) -> None:
    report(outcome, what)
    assert outcome["played"] == count or outcome["failures"]
    assert outcome["failures"] == [], "a schedule broke a safety property (replay line above)"


def test_fixed_schedules_keep_raft_safe(request):
    _check(background.result(request.node.nodeid), FAST, f"fixed schedules (seed {FIXED_SEED}, the first {FAST})")


@pytest.mark.slow   # the full suite plays every fixed schedule (in the background: tests/sim/background.py)
def test_the_rest_of_the_fixed_schedules_keep_raft_safe(request):
    _check(background.result(request.node.nodeid), FIXED - FAST,
           f"fixed schedules (seed {FIXED_SEED}, {FAST + 1} to {FIXED})")


@pytest.mark.slow   # CI (--full) plays them, in the background; the fast loop keeps the fixed set only
def test_fresh_schedules_keep_raft_safe(request):
    seed = background.fresh_seed()
    print(f"\nfresh schedules: seed {seed} (python -m tests.sim.run --schedules {FRESH} --seed {seed})")
    _check(background.result(request.node.nodeid), FRESH, f"fresh schedules (seed {seed})")
