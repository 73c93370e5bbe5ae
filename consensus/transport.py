"""PySyncObj's TCP transport, with the additions Bazar needs.

- A record of when each peer was last heard from: PySyncObj does not say when
  a follower last heard from its leader, and a non-voting follower needs that
  to know how stale it may be.
- Outgoing connections that leave from this node's own configured address.
  On loopback the kernel gives an unbound socket the source 127.0.0.1 whatever
  the destination; with every node on its own 127.0.0.x, a firewall rule on
  (source, destination) then cuts exactly one link (see chaos/network.py).
- A guarded listener. PySyncObj kept every accepted connection for as long as its peer
  liked, proved or not, and when accept() failed (as it does once the process is out of
  file descriptors) it closed its listening socket and never bound it again, silently:
  a replica flooded with idle connections stopped accepting its peers for good. Now
  connections that have not proved they hold the cluster key are strangers, held under
  the rules of `consensus.strangers` (a handshake deadline, caps per source and in all);
  a listener found closed is bound again at once, and if that keeps failing for
  BIND_RETRY_SECONDS * BIND_ATTEMPTS the process exits (status 75) so its supervisor
  restarts it. Every connection closed by these guards or by the frame guard is counted
  (`port_stats`, exported as bazar_raft_connections_closed_total) and logged, at most one
  line per kind every few seconds.
- Peers learned from the group (`learn_peer`): a replica that hears no leader asks its
  peers which one they follow (consensus/raft_fixes.py, item 8), and if its configuration
  does not name that leader, it learns the leader's address here, so that each side
  connects (or accepts the other's connection) as for a member. Only the transport learns it: who votes and who
  counts stays the configuration in the log. At most MAX_LEARNED are kept (the oldest goes
  first); one that a membership change later adds becomes a member with its connection.
- A listener that queues a burst of connections. PySyncObj listened with a queue of 5 and
  accepts one connection per tick, so connections opened faster than that found the queue
  full: the kernel dropped their SYN and each waited a second for TCP to send it again. A
  flood was taken (and so shed) at about six connections a second, and a peer reconnecting
  during one waited like the flood did. Now the queue holds ACCEPT_BACKLOG connections.
"""
from __future__ import annotations

import logging
import os
import socket as _socket
import time

import pysyncobj.tcp_connection
from pysyncobj.tcp_connection import CONNECTION_STATE
from pysyncobj.tcp_server import SERVER_STATE, TcpServer
from pysyncobj.node import TCPNode
from pysyncobj.transport import TCPTransport

from bazar.consensus import frame_guard, strangers
from bazar.consensus.patching import original, replace
from bazar.consensus.settings import BIND_ATTEMPTS, BIND_RETRY_SECONDS

LISTENER_LOST_EXIT_STATUS = 75  # as for a failed fsync: "restart me" to a supervisor

# The listener's queue of connections not yet accepted (PySyncObj: 5). Queued connections hold
# no file descriptor of the process; the kernel caps this at net.core.somaxconn.
ACCEPT_BACKLOG = 128

# Peers learned from the group rather than the configuration (a leader the configuration
# does not name yet) that the transport keeps at most; a group has at most 7 members.
MAX_LEARNED = 8

log = logging.getLogger("bazar.raft.port")


class WatchedTransport(TCPTransport):
    """A TCPTransport that timestamps every message received, per peer address, and guards
    its listener (see the module's docstring). Everything here runs on the tick thread."""

    def __init__(self, *args, **kwargs) -> None:
        self.last_heard: dict[str, float] = {}
        self._strangers = strangers.Strangers()
        # Read by other threads (metrics): the keys never change, so a copy is always safe.
        self._closed = dict.fromkeys(strangers.REASONS, 0)
        self._listener_rebinds = 0
        self._rebind_failures = 0
        self._next_rebind_at = 0.0
        self._destroyed = False
        self._port_log = strangers.ThrottledLog(log)
        self._frames_log = strangers.ThrottledLog(logging.getLogger("bazar.raft.frames"))
        self._learned: list[TCPNode] = []   # oldest first
        super().__init__(*args, **kwargs)

    # -- peers learned from the group --------------------------------------------------

    def learn_peer(self, address: str) -> bool:
        """Know the node at `address` (host:port) as a peer, and connect to it as to a member
        (whichever side PySyncObj's rule picks connects; the other accepts). Return whether
        it was new: a node already known, this one's own address, or one that is no
        host:port changes nothing."""
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536 or address in self._nodeAddrToNode:
            return False
        if self._selfNode is not None and address == self._selfNode.address:
            return False
        if len(self._learned) >= MAX_LEARNED:
            oldest = self._learned[0]
            self.dropNode(oldest)
            self._onNodeDisconnected(oldest)   # PySyncObj's dropNode leaves it counted connected
        node = TCPNode(address)
        self._learned.append(node)
        super().addNode(node)
        return True

    def addNode(self, node) -> None:
        """A membership change adds `node`. One learned already keeps its connection (PySyncObj
        would open a second one and leave the first open for good)."""
        if node in self._learned:
            self._learned.remove(node)
            return
        super().addNode(node)

    def dropNode(self, node) -> None:
        if node in self._learned:
            self._learned.remove(node)
        super().dropNode(node)

    def _onMessageReceived(self, node, message) -> None:
        self.last_heard[getattr(node, "address", str(node))] = time.monotonic()
        super()._onMessageReceived(node, message)

    def port_stats(self) -> dict:
        """Connections closed by the guards, per reason; times the listener was bound
        again; strangers held now."""
        return {"closed": dict(self._closed), "listener_rebinds": self._listener_rebinds,
                "strangers": len(self._strangers)}

    # -- strangers ----------------------------------------------------------------

    def _onNewIncomingConnection(self, conn) -> None:
        super()._onNewIncomingConnection(conn)
        try:
            source = conn._TcpConnection__socket.getpeername()[0]
        except OSError:  # gone before we looked
            conn.disconnect()
            return
        self._strangers.settle(self._no_longer_stranger)
        for old, where, reason in self._strangers.admit(conn, source, time.monotonic()):
            self._close(old, where, reason)

    @staticmethod
    def _no_longer_stranger(conn) -> bool:
        return conn.state == CONNECTION_STATE.DISCONNECTED or frame_guard.proven(conn)

    def _close(self, conn, source: str, reason: str) -> None:
        self._closed[reason] += 1
        self._port_log.warning(reason, "closed an unauthenticated Raft connection from %s (%s; %d so far)",
                               source, reason.replace("_", " "), self._closed[reason])
        conn.disconnect()

    def _onDisconnected(self, conn) -> None:
        refusal = frame_guard.take_refusal(conn)
        if refusal is not None:
            reason, length, limit = refusal
            self._closed[reason] += 1
            self._frames_log.warning(reason, "closed a Raft connection that announced a %d-byte frame (limit %d)",
                                     length, limit)
        super()._onDisconnected(conn)

    # -- the tick -----------------------------------------------------------------

    def _onTick(self) -> None:
        super()._onTick()
        self._keep_listening()
        self._strangers.settle(self._no_longer_stranger)
        for conn, source, reason in self._strangers.expired(time.monotonic()):
            self._close(conn, source, reason)

    def _keep_listening(self) -> None:
        """Bind the listener again if it was closed after it had been bound; exit the process
        if that keeps failing (nothing else would ever tell anyone)."""
        server = self._server
        if server is None or not self._ready or self._destroyed:
            return  # a non-voting follower, or PySyncObj's own first bind is still under way
        if server._TcpServer__state == SERVER_STATE.BINDED:
            return
        now = time.monotonic()
        if now < self._next_rebind_at:
            return
        if self._rebind_failures == 0:
            self._port_log.error("listener_closed", "the Raft listener %s:%s was closed (PySyncObj closes it "
                                 "when accept fails, for example when the process is out of file "
                                 "descriptors); binding it again", server._TcpServer__host, server._TcpServer__port)
        try:
            server.bind()
        except OSError as error:
            server.unbind()  # close the socket a failed bind leaves behind
            self._rebind_failures += 1
            self._next_rebind_at = now + BIND_RETRY_SECONDS
            if self._rebind_failures >= BIND_ATTEMPTS:
                log.critical("stopping: the Raft listener %s:%s could not be bound again in %d attempts (%s); "
                             "without it no peer can connect to this replica", server._TcpServer__host,
                             server._TcpServer__port, self._rebind_failures, error)
                logging.shutdown()
                os._exit(LISTENER_LOST_EXIT_STATUS)
            return
        self._listener_rebinds += 1
        self._rebind_failures = 0
        self._port_log.warning("listener_bound", "the Raft listener %s:%s is bound again (%d times so far)",
                               server._TcpServer__host, server._TcpServer__port, self._listener_rebinds)

    def destroy(self) -> None:
        self._destroyed = True
        super().destroy()


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


# -- the listener's queue --------------------------------------------------------------

def _bind_with_a_longer_queue(self: TcpServer) -> None:
    """PySyncObj's bind, then a queue of ACCEPT_BACKLOG connections instead of 5."""
    _ORIGINAL_BIND(self)
    self._TcpServer__socket.listen(ACCEPT_BACKLOG)


replace(TcpServer, "bind", _bind_with_a_longer_queue,
        "882d0da59cf54fce07ebd3b6be7e4f8996cd4ac86fc0d66b94fa170986452548",
        "(wrapped) listens with a queue of 5: connections beyond it wait a second for TCP to resend their SYN")
_ORIGINAL_BIND = original(TcpServer, "bind")
