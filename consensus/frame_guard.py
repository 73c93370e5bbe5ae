"""Limit what a Raft connection may make a node buffer and copy, until its peer has proved
itself on that very connection.

PySyncObj reads a frame as a 4-byte length and then that many bytes. It reads
everything a socket has (on the tick thread, which also runs elections and
commits) and appends it to one `bytes` buffer before it looks at the length or
checks the password: each read copied everything buffered so far, so a frame
arriving in n reads cost O(n²) bytes copied. A stranger who sends the length
0x7fffffff and then a stream of junk made a node copy ever larger buffers on its
tick thread: purchases answered 503 for as long as the junk kept coming.

This correction replaces how a connection reads, with three rules:

1. **Frame-size limits, checked on the header.** A connection whose peer has not
   proved itself may announce frames of at most `STRANGER_FRAME_BYTES`; a proved
   one, at most `PEER_FRAME_BYTES`. A larger or negative length closes the
   connection at once, with nothing buffered beyond the header (the transport
   counts and logs it: `take_refusal(conn)`).
2. **Proof is per connection.** With a cluster secret, a peer has proved itself
   once it delivered a message carrying the random session key *this* side chose
   for *this* connection (PySyncObj's `recvRandKey`: the acceptor sends a fresh one
   in answer to the connector's first frame, the connector sends one in its first
   frame), encrypted with the secret. A frame recorded off the wire and replayed on
   a new connection decrypts, but carries no key chosen for that connection: it
   proves nothing, and the connection keeps a stranger's limit. (Before, any valid
   message counted, so replaying a connector's first frame lifted the limit.)
   Without a secret there is nothing to prove; any valid message counts. Proof
   belongs to the socket: a reconnected connection object starts as a stranger.
3. **Parse before reading on, and copy each byte once.** Once the buffer holds a
   complete frame, the connection stops reading and lets PySyncObj parse it.
   While a frame is incomplete, reads are kept as a list of chunks and joined into
   PySyncObj's buffer once, when the frame is complete (or to complete a header):
   assembling a frame copies it a bounded number of times, whatever the number of
   reads.

Bazar's legitimate frames are small: appends are capped at 64 KiB
(`appendEntriesBatchSizeBytes`) and snapshots are sent in 64 KiB parts.
"""
from __future__ import annotations

import errno
import socket
import struct

from pysyncobj.tcp_connection import TcpConnection

from bazar.consensus.patching import original, replace
from bazar.consensus.strangers import OVERSIZED_FRAME

STRANGER_FRAME_BYTES = 64 * 1024        # the handshake messages are tens of bytes
PEER_FRAME_BYTES = 16 * 1024 * 1024     # far above any append or snapshot part Bazar sends
_HEADER = struct.Struct("i")            # PySyncObj's native-endian signed 32-bit length


class _Session:
    """What the guard knows about a connection's current socket."""
    __slots__ = ("socket", "proven", "chunks", "chunk_bytes", "refusal")

    def __init__(self, sock) -> None:
        self.socket = sock
        self.proven = False       # rule 2
        self.chunks: list[bytes] = []   # reads of an incomplete frame, not yet in the buffer
        self.chunk_bytes = 0
        self.refusal: tuple[str, int, int] | None = None  # (reason, announced, limit) if the guard closed it


def _session(conn: TcpConnection) -> _Session:
    sock = conn._TcpConnection__socket
    session = getattr(conn, "_bazar_session", None)
    if session is None or session.socket is not sock:
        session = conn._bazar_session = _Session(sock)
    return session


def proven(conn: TcpConnection) -> bool:
    """Whether the peer on `conn`'s current socket has proved itself (rule 2)."""
    session = getattr(conn, "_bazar_session", None)
    return (session is not None and session.proven and session.socket is not None
            and session.socket is conn._TcpConnection__socket)


def take_refusal(conn: TcpConnection) -> tuple[str, int, int] | None:
    """Why the guard closed `conn`'s socket, as (`strangers.OVERSIZED_FRAME`, the announced
    length, the limit), once: for the transport's disconnect callback. None if it did not."""
    session = getattr(conn, "_bazar_session", None)
    if session is None:
        return None
    refusal, session.refusal = session.refusal, None
    return refusal


def _frame_length(buffer: bytes) -> int | None:
    return _HEADER.unpack_from(buffer)[0] if len(buffer) >= _HEADER.size else None


def _holds_a_frame(buffer: bytes) -> bool:
    length = _frame_length(buffer)
    return length is not None and len(buffer) - _HEADER.size >= length >= 0


class _TcpConnection:
    """Replacements of TcpConnection's methods. Written inside a class of this name so
    that `self.__socket` is PySyncObj's own private attribute, `_TcpConnection__socket`."""

    def guarded_read(self) -> bool:
        """One recv (unless a whole frame already waits), kept aside until its frame is
        complete; close the connection on a header beyond its limit. True if it read."""
        if _holds_a_frame(self.__readBuffer):
            return False  # a complete frame is buffered: parse it before reading more
        session = _session(self)
        try:
            incoming = self.__socket.recv(self.__recvBufferSize)
        except socket.error as e:
            if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                self.disconnect()
            return False
        if self.__socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            self.disconnect()
            return False
        if not incoming:
            self.disconnect()
            return False
        session.chunks.append(incoming)
        session.chunk_bytes += len(incoming)
        length = _frame_length(self.__readBuffer)
        if length is None or len(self.__readBuffer) + session.chunk_bytes >= _HEADER.size + length:
            # The header is incomplete (the buffer holds under 4 bytes) or the frame is whole.
            self.__readBuffer = b"".join([self.__readBuffer, *session.chunks])
            session.chunks.clear()
            session.chunk_bytes = 0
            length = _frame_length(self.__readBuffer)
        if length is None:
            return True
        limit = PEER_FRAME_BYTES if session.proven else STRANGER_FRAME_BYTES
        if length < 0 or length > limit:
            session.refusal = (OVERSIZED_FRAME, length, limit)
            self.disconnect()
            return False
        return True

    def parse_and_prove(self):
        """PySyncObj's parse; a message that carried this side's session key for this
        connection (or any message, without a cluster secret) proves the peer."""
        challenge = self.recvRandKey
        message = _ORIGINAL_PARSE(self)
        if message is not None and (self.encryptor is None or challenge is not None):
            _session(self).proven = True
        return message


replace(TcpConnection, "_TcpConnection__processRead", _TcpConnection.guarded_read,
        "bceae2b0a0bab8edca0c6bde59dcc4ee67e0988755ec25bd21c85b8051959d6f",
        "buffers a frame of any announced size, on the tick thread, before checking anything, "
        "copying all it holds on every read (quadratic in the frame's reads)")
replace(TcpConnection, "_TcpConnection__processParseMessage", _TcpConnection.parse_and_prove,
        "19eae7107b51a0d8df6b1de4c22cfd04a520ef258c24f219b976ca528dcc852e",
        "(wrapped, not changed: tells the read guard when a peer has proved itself on this connection)")
_ORIGINAL_PARSE = original(TcpConnection, "_TcpConnection__processParseMessage")
