"""Limit what a Raft connection may make a node buffer, before anyone is authenticated.

PySyncObj reads a frame as a 4-byte length and then that many bytes. It reads
everything a socket has (on the tick thread, which also runs elections and
commits) and appends it to one `bytes` buffer before it looks at the length or
checks the password. A stranger who sends the length 0x7fffffff and then a
stream of junk therefore made a node copy ever larger buffers on its tick
thread: purchases answered 503 for as long as the junk kept coming.

This correction makes a connection's reads obey two rules:

1. **Frame-size limits, checked on the header.** A connection that has not yet
   delivered one valid message (for an encrypted cluster: one that decrypted
   with the cluster secret) may announce frames of at most
   `STRANGER_FRAME_BYTES`; after that, at most `PEER_FRAME_BYTES`. A larger or
   negative length closes the connection at once, with nothing buffered beyond
   the header.
2. **Parse before reading on.** Once the buffer holds a complete frame, the
   connection stops reading and lets PySyncObj parse it, so the buffer never
   grows past one frame plus one read, however fast a peer sends.

Bazar's legitimate frames are small: appends are capped at 64 KiB
(`appendEntriesBatchSizeBytes`) and snapshots are sent in 64 KiB parts.
"""
from __future__ import annotations

import logging
import struct

from pysyncobj.tcp_connection import TcpConnection

from bazar.consensus.patching import original, replace

log = logging.getLogger("bazar.raft.frames")

STRANGER_FRAME_BYTES = 64 * 1024        # the handshake messages are tens of bytes
PEER_FRAME_BYTES = 16 * 1024 * 1024     # far above any append or snapshot part Bazar sends
_HEADER = struct.Struct("i")            # PySyncObj's native-endian signed 32-bit length


def _frame_length(buffer: bytes) -> int | None:
    return _HEADER.unpack_from(buffer)[0] if len(buffer) >= _HEADER.size else None


def _guarded_read(self: TcpConnection) -> bool:
    """One recv, unless a whole frame is already waiting; refuse an oversized header."""
    length = _frame_length(self._TcpConnection__readBuffer)
    if length is not None and len(self._TcpConnection__readBuffer) - _HEADER.size >= length >= 0:
        return False  # a complete frame is buffered: parse it before reading more
    more = _ORIGINAL_READ(self)
    length = _frame_length(self._TcpConnection__readBuffer)
    if length is None:
        return more
    limit = PEER_FRAME_BYTES if getattr(self, "_bazar_peer", False) else STRANGER_FRAME_BYTES
    if length < 0 or length > limit:
        log.warning("closed a Raft connection that announced a %d-byte frame (limit %d)", length, limit)
        self.disconnect()
        return False
    return more


def _parse_and_trust(self: TcpConnection):
    """PySyncObj's parse; a connection that delivered a valid message counts as a peer
    (with a cluster secret, only a holder of the secret can produce one)."""
    message = _ORIGINAL_PARSE(self)
    if message is not None:
        self._bazar_peer = True
    return message


replace(TcpConnection, "_TcpConnection__processRead", _guarded_read,
        "bceae2b0a0bab8edca0c6bde59dcc4ee67e0988755ec25bd21c85b8051959d6f",
        "buffers a frame of any announced size, on the tick thread, before checking anything")
replace(TcpConnection, "_TcpConnection__processParseMessage", _parse_and_trust,
        "19eae7107b51a0d8df6b1de4c22cfd04a520ef258c24f219b976ca528dcc852e",
        "(wrapped, not changed: tells the read guard when a connection has proved itself)")
_ORIGINAL_READ = original(TcpConnection, "_TcpConnection__processRead")
_ORIGINAL_PARSE = original(TcpConnection, "_TcpConnection__processParseMessage")
