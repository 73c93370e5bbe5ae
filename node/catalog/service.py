"""How a catalog replica is put together: its state machine, routes and start-up work.

A service object per group is how behaviour is chosen once, by the composition
root (node/replica.py), instead of by `if group == ...` wherever it matters.
"""
from __future__ import annotations

from flask import Flask

from bazar.cluster.config import ClusterConfig
from bazar.node.api import Replica
from bazar.node.catalog import routes
from bazar.node.catalog.seed import read_seed, seed_when_leader
from bazar.node.catalog.state import CatalogState
from bazar.web.metrics import CatalogMetrics


class CatalogService:
    group = "catalog"

    def __init__(self, config: ClusterConfig) -> None:
        self.seed = read_seed(config.catalog_seed)  # read and checked before anything starts

    def machine(self) -> CatalogState:
        return CatalogState()

    def register(self, app: Flask, replica: Replica) -> None:
        routes.register(app, replica)
        CatalogMetrics(replica.metrics, lambda: replica.state.read(lambda m: m.unrecorded_summary())[0])

    def start(self, replica: Replica) -> None:
        """Until the group is seeded, its leader commits the seed (once per group)."""
        seed_when_leader(replica, self.seed)

    def serving(self, replica: Replica) -> bool:
        """A catalog replica serves once the seed is applied: before, it has no books."""
        return replica.state.read(lambda m: m.seeded)[0]

