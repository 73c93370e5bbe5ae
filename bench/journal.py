"""Write a replica's journal offline, for the restart-recovery phase.

`python -m bazar.bench.journal build-journal CONFIG NODE COUNT` runs the replica's own
Raft member and state machine in-process, without HTTP, and submits the purchases
straight to the log, so the journal is exactly what a running replica would have written.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build_journal_subprocess(config_path: Path, node_id: str, purchases: int) -> dict:
    """Run `build-journal` in a child process (its Raft threads die with it); its JSON answer."""
    from bazar.local.cluster import _die_with_parent

    done = subprocess.run([sys.executable, "-m", "bazar.bench.journal", "build-journal", str(config_path), node_id,
                           str(purchases)], cwd=str(ROOT), capture_output=True, text=True, timeout=900,
                          preexec_fn=_die_with_parent)
    if done.returncode != 0:
        raise RuntimeError(f"building the journal failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def build_journal(config_path: str, node_id: str, purchases: int, window: int = 2000) -> dict:
    """Write `purchases` purchases of book 1 into replica `node_id`'s journal, without HTTP.

    Uses the replica's own `build` (same Raft settings, journal path and state machine), so the
    journal is exactly what a running replica would have written.
    """
    from bazar.cluster.config import load
    from bazar.node.catalog import commands
    from bazar.node.replica import build

    config = load(config_path)
    _, replica = build(config, node_id)
    state, member = replica.state, replica.member
    deadline = time.monotonic() + 60
    while not state.read(lambda m: m.seeded)[0]:
        if time.monotonic() > deadline:
            raise TimeoutError("the catalog was not seeded")
        time.sleep(0.02)
    book = 1
    member.submit(commands.to_wire(commands.update_book(book, {"stock": purchases + 1000}, "bench-stock")), 10)
    slots = threading.Semaphore(window)
    lock = threading.Lock()
    failures: list = []
    outstanding = [purchases]
    finished = threading.Event()
    if purchases == 0:
        finished.set()

    last_done = [time.monotonic()]
    longest_gap = [0.0]

    def on_result(result, ok: bool) -> None:
        if not ok or not result.get("ok"):
            failures.append(result)
        now = time.monotonic()  # gaps between applied purchases show stalls of the tick thread
        longest_gap[0] = max(longest_gap[0], now - last_done[0])
        last_done[0] = now
        slots.release()
        with lock:
            outstanding[0] -= 1
            if outstanding[0] == 0:
                finished.set()

    started = time.monotonic()
    last_done[0] = started
    for i in range(purchases):
        slots.acquire()
        member.submit_nowait(commands.to_wire(commands.purchase(book, f"journal-{i:07d}")), on_result)
    if not finished.wait(600):
        raise TimeoutError("the purchases were not all applied")
    if failures:
        raise RuntimeError(f"{len(failures)} purchases failed, e.g. {failures[0]}")
    elapsed = time.monotonic() - started
    final_stock = state.read(lambda m: m.book(book)["stock"])[0]
    applied = state.applied_index
    time.sleep(1.2)  # PySyncObj stores the commit index once a second
    member.close()
    return {"book": book, "final_stock": final_stock, "applied_index": applied,
            "purchases_per_s": purchases / elapsed if purchases and elapsed > 0 else None,
            "longest_stall_s": longest_gap[0]}


def _main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "build-journal":
        import logging
        logging.basicConfig(level=logging.WARNING)
        print(json.dumps(build_journal(argv[1], argv[2], int(argv[3]))), flush=True)
        return 0
    print("usage: python -m bazar.bench.journal build-journal CONFIG NODE COUNT", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
