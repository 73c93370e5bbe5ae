"""The full suite's long simulator work, played in the background from the session's start.

The simulator's share of the full suite (the fixed schedules, the fresh ones, the mutation
hunts) is pure CPU: about 110 s of one core here. The integration tests that run before it
leave a core idle much of the time (they wait for elections, faults and timeouts). So when a
session selects those tests and integration tests, tests/conftest.py starts them at the
session's start (`start`), in a process (and its workers, one per core) at nice 19, which
takes only CPU nobody else wants. Each test then takes its result at its turn (`result`) and
asserts on it exactly as if it had computed it; if it is not there yet, the test stops the
background process (the later results are not there either: they are computed in the tests'
order) and computes it itself. Any other session (`pytest`, `pytest tests/sim`) computes
each result in the test.

    python -m tests.sim.background DIR KEY...    # what `start` runs: each KEY's result to DIR/KEY.json
"""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# pytest node id -> (job key, what to compute): ("run", seed, first, count) plays schedules
# first..first+count-1 of `seed` (tests.sim.run.run); ("hunt", name, schedules) is
# tests.sim.mutation.hunt(name, seed=1, ...). The fresh seed is drawn once per session.
FIXED_SEED, FIXED, FAST = 0, 400, 100   # the fast loop plays the first FAST
FRESH = int(os.environ.get("BAZAR_SIM_FRESH", "300"))
CAUGHT_IN_CI = {"applyLogEntries": 200, "setTransmissionData": 800, "connectedToAnyone": 700,
                "doApplyCommand": 300, "loadDumpFile": 800,
                # raft_fixes.learn_leader, a leader the configuration does not name (caught by the 128th)
                "leaders_outside_the_configuration_unknown": 250}
# correction -> schedules of seed 1 within which the simulator catches it, with room to
# spare (measured on schedules with membership and read steps: bench/results/simulator.md);
# the fast set's share of the mutation check.
CAUGHT_QUICKLY = {"createJournal": 20, "serialize": 80, "onMessageReceived": 20,
                  # raft_fixes.configuration_at, a snapshot's configuration (caught by the 99th)
                  "snapshot_configuration_of_the_log_end": 160,
                  # raft_fixes.ignores_vote_request, by the end's partial partition (caught by the 1st)
                  "vote_requests_of_disruptive_candidates_heard": 20}
_SCHEDULES = "tests/sim/test_schedules.py::"
_MUTATION = "tests/sim/test_mutation.py::test_reverting_a_correction_is_caught"


def fresh_seed() -> int:
    """The seed of this session's fresh schedules: $BAZAR_SIM_SEED, or drawn once and kept
    in the environment, so the background process and the test printing it agree."""
    if not os.environ.get("BAZAR_SIM_SEED"):
        os.environ["BAZAR_SIM_SEED"] = str(random.SystemRandom().randrange(1, 10 ** 6))
    return int(os.environ["BAZAR_SIM_SEED"])


def jobs() -> dict[str, tuple[str, tuple]]:
    table = {
        _SCHEDULES + "test_fixed_schedules_keep_raft_safe": ("fixed", ("run", FIXED_SEED, 0, FAST)),
        _SCHEDULES + "test_the_rest_of_the_fixed_schedules_keep_raft_safe":
            ("rest_of_fixed", ("run", FIXED_SEED, FAST, FIXED - FAST)),
        _SCHEDULES + "test_fresh_schedules_keep_raft_safe":
            ("fresh", ("run", fresh_seed(), 0, FRESH)),
    }
    for name, schedules in CAUGHT_IN_CI.items():
        table[f"{_MUTATION}_by_the_full_suite[{name}]"] = (f"hunt_{name}", ("hunt", name, schedules))
    for name, schedules in CAUGHT_QUICKLY.items():
        table[f"{_MUTATION}[{name}]"] = (f"hunt_{name}", ("hunt", name, schedules))
    return table


def compute(job: tuple) -> dict:
    """The result of `job`, as JSON-ready data (a failure as its text)."""
    kind, *args = job
    if kind == "run":
        from tests.sim.run import run, schedule_seeds
        seed, first, count = args
        outcome = run(schedule_seeds(seed, first + count)[first:], out=None)
        outcome["failures"] = [[seed, str(error), seconds, played]
                               for seed, error, seconds, played in outcome["failures"]]
        return outcome
    if kind == "hunt":
        from tests.sim.mutation import hunt
        name, schedules = args
        return hunt(name, seed=1, schedules=schedules, seconds=float("inf"))
    raise ValueError(f"unknown job {job!r}")


class Background:
    """The process computing the selected jobs, and where their results land."""

    def __init__(self, keys: list[str], table: dict[str, tuple[str, tuple]]) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="bazar-sim-background-"))
        self.jobs = {table[key][0]: table[key][1] for key in keys}
        (self.directory / "jobs.json").write_text(json.dumps(self.jobs))
        self.log = open(self.directory / "log.txt", "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.sim.background", str(self.directory), *self.jobs],
            stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=lambda: os.nice(19))

    def result(self, key: str) -> dict | None:
        """The job's result if it is written already, else None (the test computes it: at
        nice 19 the background process may be starved by other work, and waiting for it
        would be slower than computing it at full priority)."""
        path = self.directory / f"{key}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.log.close()
        shutil.rmtree(self.directory, ignore_errors=True)


_running: Background | None = None


def start(node_ids: list[str]) -> None:
    """Start computing the jobs of the selected tests among `node_ids` (conftest, once)."""
    global _running
    table = jobs()
    keys = [node_id for node_id in node_ids if node_id in table]
    # Only integration tests leave a core idle long enough; the fast set (unit tests after
    # the simulator's) computes inline.
    others = any(node_id.startswith("tests/integration/") for node_id in node_ids)
    if keys and others and _running is None:
        _running = Background(keys, table)


def stop() -> None:
    global _running
    if _running is not None:
        _running.stop()
        _running = None


def result(node_id: str) -> dict:
    """The test `node_id`'s result: from the background process if it has written it
    already, else computed here."""
    key, job = jobs()[node_id]
    if _running is not None and key in _running.jobs:
        found = _running.result(key)
        if found is not None:
            return found
        # The jobs are computed in the order of the tests, so none after this one is there
        # either: stop the process rather than compete with it, and compute from here on.
        stop()
    return json.loads(json.dumps(compute(job)))


def main(argv: list[str]) -> int:
    directory, keys = Path(argv[0]), argv[1:]
    table = json.loads((directory / "jobs.json").read_text())
    for key in keys:
        outcome = compute(tuple(table[key]))
        partial = directory / f"{key}.json.partial"
        partial.write_text(json.dumps(outcome))
        partial.rename(directory / f"{key}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
