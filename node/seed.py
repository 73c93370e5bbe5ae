"""Load the initial catalog once, when a fresh catalog group first has a leader."""
from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from consensus import CommitError
from node.api import Replica
from node.commands import BadRequest, add_book

log = logging.getLogger("bazar.seed")


def read_seed(path: Path) -> list[dict]:
    """The books in a seed file, validated like POST /books bodies."""
    books = json.loads(path.read_text())
    if not isinstance(books, list):
        raise BadRequest(f"{path}: expected a JSON list of books")
    return [{k: v for k, v in add_book(b).items() if k not in ("op", "request_id")} for b in books]


def seed_when_leader(replica: Replica, books: list[dict]) -> threading.Thread:
    """Until the group is seeded, have its leader commit the seed (a no-op if already seeded)."""
    def run() -> None:
        while True:
            seeded, _ = replica.state.read(lambda m: m.seeded)
            if seeded:
                return
            if replica.member.is_leader:
                try:
                    if replica.member.submit({"op": "seed", "books": books}, 2.0).get("seeded"):
                        log.info("seeded the catalog with %d books", len(books))
                except CommitError:
                    pass
            threading.Event().wait(0.1)

    thread = threading.Thread(target=run, name="seed", daemon=True)
    thread.start()
    return thread
