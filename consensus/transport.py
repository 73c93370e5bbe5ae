"""PySyncObj's TCP transport, plus a record of when each peer was last heard from.

PySyncObj does not say when a follower last heard from its leader; a
non-voting follower needs exactly that to know how stale it may be.
"""
from __future__ import annotations

import time

from pysyncobj.transport import TCPTransport


class WatchedTransport(TCPTransport):
    """A TCPTransport that timestamps every message received, per peer address."""

    def __init__(self, *args, **kwargs) -> None:
        self.last_heard: dict[str, float] = {}
        super().__init__(*args, **kwargs)

    def _onMessageReceived(self, node, message) -> None:
        self.last_heard[getattr(node, "address", str(node))] = time.monotonic()
        super()._onMessageReceived(node, message)
