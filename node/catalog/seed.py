"""Load the initial catalog once, when a fresh catalog group first has a leader."""
from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from bazar.consensus import CommitError
from bazar.node.api import Replica
from bazar.node.catalog import commands
from bazar.web.errors import BadRequest

log = logging.getLogger("bazar.seed")


def read_seed(path: Path) -> commands.Seed:
    """The seed command for a seed file's books, each validated like a POST /books body."""
    try:
        return commands.seed(json.loads(path.read_text()))
    except BadRequest as exc:
        raise BadRequest(f"{path}: {exc}") from None


def seed_when_leader(replica: Replica, seed: commands.Seed) -> threading.Thread:
    """Until the group is seeded, have its leader commit the seed (a no-op if already seeded)."""
    def run() -> None:
        while True:
            seeded, _ = replica.state.read(lambda m: m.seeded)
            if seeded:
                return
            if replica.member.is_leader:
                try:
                    if replica.member.submit(commands.to_wire(seed), 2.0).get("seeded"):
                        log.info("seeded the catalog with %d books", len(seed.books))
                except CommitError:
                    pass
            threading.Event().wait(0.1)

    thread = threading.Thread(target=run, name="seed", daemon=True)
    thread.start()
    return thread
