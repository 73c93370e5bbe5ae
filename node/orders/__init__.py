"""The order group: the record of every purchase, and the purchase itself.

- `state.py`: the state machine (pending -> completed / failed);
- `commands.py`: the order commands (begin, finish);
- `purchase.py`: the coordinator of the three steps across both groups;
- `recovery.py`: the sweeper that finishes orders whose coordinator died;
- `routes.py`: an order replica's HTTP routes;
- `service.py`: how an order replica is put together (`OrderService`).
"""
from bazar.node.orders.state import COMPLETED, FAILED, PENDING, OrderState  # noqa: F401
