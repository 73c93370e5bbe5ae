"""Record what a purchase's coordinator left undone when it died.

Two kinds of orders, both older than a grace so that live coordinators finish first:

- purchases the catalog decided that this group has no record of (the coordinator died
  after the catalog's commit, before its `record` committed): the catalog keeps them
  until told they are recorded (`GET /unrecorded`, `POST /recorded`), so the sweep
  records each, waits for the commit, then tells the catalog;
- orders recorded pending (`begin`, when the catalog could not decide in time): the
  sweep asks the catalog again, which decides them once, and records the outcome.

Only the order group's leader runs the sweep, so replicas do not race each
other (a race would be harmless: every step is idempotent per order id).
"""
from __future__ import annotations

import logging
import threading
import time

from bazar.node.validation import MAX_RECORDED
from bazar.node.orders.purchase import PurchaseCoordinator
from bazar.web.client import Refused, Unavailable
from bazar.web.protocol import INDEX_HEADER

log = logging.getLogger("bazar.recovery")

SWEEP_EVERY = 0.5
MAX_PAGES = 8  # pages of unrecorded purchases one sweep goes through


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
        """Record the stale unrecorded purchases, then finish every stale pending order
        once; return how many orders were recorded or decided."""
        if not self.coordinator.replica.member.is_leader:
            return 0
        return self.sweep_unrecorded() + self.sweep_pending()

    def sweep_unrecorded(self) -> int:
        """Record the purchases the catalog keeps as unrecorded, created more than the
        grace ago (their coordinator sends or proposes `record` within well under a second,
        frontend/checkout.py's RECORD_DELAY or purchase.py's FINISH_DELAY, and may take until
        the commit timeout to commit it), and tell the catalog which are recorded now (a page
        of MAX_RECORDED at a time, while pages come full); return how many the sweep itself
        recorded, which is none while every coordinator records its own."""
        recorded_here = 0
        for _ in range(MAX_PAGES):
            catalog = self.coordinator.catalog
            try:
                response = catalog.read(f"/unrecorded?before={time.time() - self.grace:.3f}"
                                        f"&limit={MAX_RECORDED}", timeout=2.0, prefer_leader=True)
            except (Unavailable, Refused):
                break
            if response.status_code != 200:
                break
            purchases = response.json()["purchases"]
            if not purchases:
                break
            index = int(response.headers.get(INDEX_HEADER, 0))
            recorded, recorded_now = self.coordinator.record_unrecorded(purchases, index)
            recorded_here += recorded_now
            if recorded_now:
                log.info("recorded %d purchases whose coordinator did not", recorded_now)
            if recorded:
                try:
                    catalog.write("POST", "/recorded", {"order_ids": recorded}, timeout=2.0)
                except (Unavailable, Refused):   # told next sweep: recording again changes nothing
                    log.warning("could not tell the catalog that %d orders are recorded", len(recorded))
                    break
            if len(purchases) < MAX_RECORDED or len(recorded) < len(purchases):
                break
        return recorded_here

    def sweep_pending(self) -> int:
        """Finish every stale pending order once; return how many were decided."""
        replica = self.coordinator.replica
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
