"""Does the simulator notice when one of Bazar's corrections to PySyncObj is taken away?
(tests/sim/mutation.py: each correction reverted alone, schedules drawn until one fails
that passes with every correction in place.)

The fast test covers the corrections generated schedules catch within a few dozen
schedules of seed 1 (deterministic: the same schedules every run). The slow one
(`pytest -m manual tests/sim/test_mutation.py`, longer than CI's budget) hunts for every correction and prints the
table; the corrections in OUTSIDE_THE_MODEL cannot be caught by this simulator, for
the reasons given there, and are reported, not asserted.
"""
from __future__ import annotations

import pytest

from tests.sim.mutation import corrections, hunt

# correction -> schedules of seed 1 within which the simulator catches it, with room to
# spare (measured on schedules with membership and read steps: bench/results/simulator.md).
CAUGHT_QUICKLY = {"createJournal": 20, "serialize": 80, "onMessageReceived": 20}

OUTSIDE_THE_MODEL = {
    "sendAppendEntries": "the leader's fsync right after sending: a speed-up only; its commit "
                         "syncs first anyway, so nothing observable changes",
    "connectedToAnyone": "a replica whose journal lost committed entries must not campaign: "
                         "with fsync on, the simulator's faults never make a journal lose "
                         "committed entries without a damaged disk (test_follower_rules.py "
                         "covers it by cutting a journal by hand)",
    "_checkCommandsToApply": "group commit changes when entries are sent, not what is committed "
                             "or when: a speed correction",
    "sendNextNodeIdx": "superseded: every follower reply goes through raft_fixes' acknowledge, "
                       "which syncs first (caught with onMessageReceived)",
    "_onUtilityMessage": "PySyncObj's admin commands arrive on sockets the simulator does not have",
    "processRead": "PySyncObj's TCP framing: the simulated network hands over whole messages",
    "send": "how a frame is compressed: the simulated network hands over whole messages",
    "processParseMessage": "PySyncObj's TCP framing: the simulated network hands over whole messages",
    "bind": "the Raft listener's accept queue: the simulated network has no sockets",
}


# Caught within a few hundred schedules of seed 1 (figures in bench/results/simulator.md;
# doApplyCommand by World.check_configurations, Raft §6): run by the full suite (CI), not
# the fast set.
CAUGHT_IN_CI = {"applyLogEntries": 200, "setTransmissionData": 800, "connectedToAnyone": 700,
                "doApplyCommand": 300, "loadDumpFile": 800}


def assert_caught(name: str, schedules: int) -> None:
    """Reverting correction `name` alone makes one of `schedules` schedules of seed 1 fail."""
    result = hunt(name, seed=1, schedules=schedules, seconds=float("inf"))
    print(f"\n{name}: caught after {result['schedules']} schedules ({result['seconds']:.1f} s), "
          f"schedule {result['seed']}: {result['failure']}")
    assert result["caught"], f"{result['schedules']} schedules passed with {name} reverted"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CAUGHT_IN_CI))
def test_reverting_a_correction_is_caught_by_the_full_suite(name):
    assert_caught(name, CAUGHT_IN_CI[name])


@pytest.mark.parametrize("name", sorted(CAUGHT_QUICKLY))
def test_reverting_a_correction_is_caught(name):
    assert_caught(name, CAUGHT_QUICKLY[name])


@pytest.mark.manual
def test_mutation_table():
    names = sorted(corrections())
    rows = {name: hunt(name, seed=1, schedules=3000, seconds=float("inf")) for name in names}
    for name, r in rows.items():
        print(f"\n{name:24} {'caught' if r['caught'] else 'not caught':10} {r['schedules']:5} schedules "
              f"{r['seconds']:6.1f} s  {r['seed'] or ''} {r['failure'] or OUTSIDE_THE_MODEL.get(name, '')}")
    missed = [n for n, r in rows.items() if not r["caught"] and n not in OUTSIDE_THE_MODEL]
    assert missed == [], f"reverted and not caught: {missed}"
