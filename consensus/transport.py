"""PySyncObj's TCP transport, with two additions Bazar needs.

- A record of when each peer was last heard from: PySyncObj does not say when
  a follower last heard from its leader, and a non-voting follower needs that
  to know how stale it may be.
- Outgoing connections that leave from this node's own configured address.
  On loopback the kernel gives an unbound socket the source 127.0.0.1 whatever
  the destination; with every node on its own 127.0.0.x, a firewall rule on
  (source, destination) then cuts exactly one link (see chaos/network.py).
"""
from __future__ import annotations

import socket as _socket
import time

import pysyncobj.tcp_connection
from pysyncobj.transport import TCPTransport


class WatchedTransport(TCPTransport):
    """A TCPTransport that timestamps every message received, per peer address."""

    def __init__(self, *args, **kwargs) -> None:
        self.last_heard: dict[str, float] = {}
        super().__init__(*args, **kwargs)

    def _onMessageReceived(self, node, message) -> None:
        self.last_heard[getattr(node, "address", str(node))] = time.monotonic()
        super()._onMessageReceived(node, message)


class _SocketsFrom:
    """Stands in for the `socket` module inside pysyncobj.tcp_connection: every new
    socket is bound to `host` before PySyncObj connects it; all else is the real module."""

    def __init__(self, host: str) -> None:
        self.host = host

    def socket(self, *args, **kwargs) -> _socket.socket:
        sock = _socket.socket(*args, **kwargs)
        sock.bind((self.host, 0))
        return sock

    def __getattr__(self, name: str):
        return getattr(_socket, name)


def connect_from(host: str | None) -> None:
    """Make this process's outgoing Raft connections leave from `host` (one member per process).

    None leaves the choice to the kernel, as for a node that listens on the wildcard or
    is known by a host name (see `source_host` in cluster/config.py).
    """
    pysyncobj.tcp_connection.socket = _socket if host is None else _SocketsFrom(host)
