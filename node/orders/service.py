"""How an order replica is put together: its state machine, the purchase coordinator,
its routes and the sweeper that finishes orders whose coordinator died."""
from __future__ import annotations

from flask import Flask

from bazar.cluster.config import ClusterConfig
from bazar.node.api import Replica
from bazar.node.orders import routes
from bazar.node.orders.purchase import PurchaseCoordinator
from bazar.node.orders.recovery import PendingOrderSweeper
from bazar.node.orders.state import OrderState
from bazar.web.client import GroupClient
from bazar.web.metrics import OrderMetrics


class OrderService:
    group = "order"

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.coordinator: PurchaseCoordinator | None = None

    def machine(self) -> OrderState:
        return OrderState()

    def register(self, app: Flask, replica: Replica) -> None:
        node = replica.node
        catalog = GroupClient([n.http.url for n in self.config.catalog], secret=self.config.secret(),
                              source_host=node.source_host, write_attempt_timeout=1.0)
        order_metrics = OrderMetrics(replica.metrics, lambda: replica.state.read(lambda m: len(m.pending_ids))[0])
        self.coordinator = PurchaseCoordinator(replica, catalog, order_metrics)
        routes.register(app, replica, self.coordinator)

    def start(self, replica: Replica) -> None:
        PendingOrderSweeper(self.coordinator, grace=self.config.raft.commit_timeout + 1.0).start()

    def serving(self, replica: Replica) -> bool:
        return True  # nothing to do at start-up
