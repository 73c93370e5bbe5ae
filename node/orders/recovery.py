"""Finish orders whose coordinator died between recording and deciding them.

Only the order group's leader runs the sweep, so replicas do not race each
other (a race would be harmless: every step is idempotent per order id).
"""
from __future__ import annotations

import logging
import threading
import time

from bazar.node.orders.purchase import PurchaseCoordinator

log = logging.getLogger("bazar.recovery")

SWEEP_EVERY = 0.5


class PendingOrderSweeper:
    """A daemon thread that finishes pending orders older than `grace` seconds."""

    def __init__(self, coordinator: PurchaseCoordinator, grace: float) -> None:
        self.coordinator = coordinator
        self.grace = grace
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pending-orders", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def sweep(self) -> int:
        """Finish every stale pending order once; return how many were decided."""
        replica = self.coordinator.replica
        if not replica.member.is_leader:
            return 0
        pending, _ = replica.state.read(lambda m: m.pending())
        cutoff = time.time() - self.grace
        decided = 0
        for order in sorted(pending, key=lambda o: o["seq"]):
            if order["created_at"] > cutoff:
                continue
            try:
                result = self.coordinator.finish(order)
            except Exception:  # a commit failure: try again next sweep
                log.warning("could not finish pending order %s yet", order["order_id"])
                continue
            if result["status"] != order["status"]:
                decided += 1
                log.info("finished pending order %s: %s", order["order_id"], result["status"])
        return decided

    def _run(self) -> None:
        while not self._stop.wait(SWEEP_EVERY):
            try:
                self.sweep()
            except Exception:
                log.exception("pending-order sweep failed")
