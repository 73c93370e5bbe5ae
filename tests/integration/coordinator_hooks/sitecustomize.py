"""Test-only faults in a purchase's coordinator, loaded (through PYTHONPATH) into the
processes of tests/integration/test_purchases_under_faults.py; inert unless one of the
variables below is set, and then only in an order replica (`bazar node order...`).

- BAZAR_HOLD_FINISH=<prefix>: an order whose id starts with <prefix> is never recorded as
  decided: the coordinator's `record` proposal is dropped, a record a frontend sends for it
  (`POST /records`) becomes a `finish`, which changes nothing for an order never begun, and
  the recovery loop leaves the order alone, so the order group has no record of it for good (or a "pending" one) while
  the catalog has taken the stock. What readers see can then only come from the catalog.
- BAZAR_DIE_BEFORE_FINISH=<prefix> with BAZAR_HOOK_DIR=<dir>: the first coordinator to get
  the catalog's outcome for such an order SIGKILLs its own process right there, after the
  catalog's commit and before `record` is proposed (once per cluster: it creates
  <dir>/died-<order id> first).
"""
import os
import signal
import sys

_HOLD = os.environ.get("BAZAR_HOLD_FINISH")
_DIE = os.environ.get("BAZAR_DIE_BEFORE_FINISH")

if (_HOLD or _DIE) and "node" in sys.argv and any(arg.startswith("order") for arg in sys.argv):
    from bazar.node.orders import purchase as _purchase

    _Coordinator = _purchase.PurchaseCoordinator
    _real_record, _real_finish = _Coordinator._record, _Coordinator.finish
    _real_record_unrecorded = _Coordinator.record_unrecorded
    from bazar.node.orders import commands as _commands
    _real_record_of = _commands.record_of

    def _record_of(item):
        command = _real_record_of(item)
        if _HOLD and command.order_id.startswith(_HOLD):
            return _commands.finish(command.order_id, command.outcome, command.catalog_index)
        return command

    _commands.record_of = _record_of

    def _first(order_id: str) -> bool:
        try:
            os.close(os.open(os.path.join(os.environ["BAZAR_HOOK_DIR"], f"died-{order_id}"),
                             os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return True
        except FileExistsError:
            return False

    def _record(self, order, outcome, catalog_index):
        order_id = order["order_id"]
        if _HOLD and order_id.startswith(_HOLD):
            return
        if _DIE and order_id.startswith(_DIE) and _first(order_id):
            os.kill(os.getpid(), signal.SIGKILL)
        _real_record(self, order, outcome, catalog_index)

    def _finish(self, order):
        if _HOLD and order["order_id"].startswith(_HOLD):
            return order
        return _real_finish(self, order)

    def _record_unrecorded(self, purchases, index):
        if _HOLD:
            purchases = [p for p in purchases if not p["order_id"].startswith(_HOLD)]
        return _real_record_unrecorded(self, purchases, index)

    _Coordinator._record = _record
    _Coordinator.finish = _finish
    _Coordinator.record_unrecorded = _record_unrecorded
