"""How a Raft connection writes a frame: PySyncObj's format, without its fixed cost.

PySyncObj 0.3.17 writes every message as `zlib.compress(pickle.dumps(message), 3)`,
encrypted with the cluster secret and prefixed with its length. `zlib.compress`
sets up a fresh deflate state for every call, with zlib's largest window: it
allocates and clears about 256 KiB before it compresses anything. For Raft's
messages (appends of a few hundred bytes, replies of tens) that setup is nearly
all the work: about 0.13 ms a message on this project's machine, ten times the
pickling and encryption together, and a purchase sends a dozen messages between
its replicas.

`send` (replaced below) writes the same frame with a 4 KiB window and a small
memory level: the same zlib stream format, which PySyncObj's reader
(`zlib.decompress`, any window up to 32 KiB) reads unchanged, so a replica with
this correction and one without understand each other. Messages of a few KiB
compress as well as before (the window covers them); snapshot parts (64 KiB)
compress a little less well. About 0.013 ms a small message.
"""
from __future__ import annotations

import struct
import zlib

import pysyncobj.pickle as _pickle
from pysyncobj.monotonic import monotonic as _monotonic
from pysyncobj.tcp_connection import TcpConnection

from bazar.consensus.patching import replace

LEVEL = 3            # PySyncObj's level
WINDOW_BITS = 12     # a 4 KiB window (zlib's default, 15, is 32 KiB)
MEMORY_LEVEL = 4     # the size of deflate's hash tables (default 8)
_HEADER = struct.Struct("i")  # PySyncObj's native-endian signed 32-bit length


def compress(data: bytes) -> bytes:
    """A zlib stream of `data` that any zlib reader decompresses."""
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, WINDOW_BITS, MEMORY_LEVEL)
    return compressor.compress(data) + compressor.flush()


class _TcpConnection:
    """Written inside a class of this name so that `self.__writeBuffer` is PySyncObj's own
    private attribute, `_TcpConnection__writeBuffer`."""

    def send(self, message):
        """PySyncObj's send: the session key, pickle, zlib, encryption, the length; only
        the compressor differs (see the module docstring)."""
        if self.sendRandKey:
            message = (self.sendRandKey, message)
        data = compress(_pickle.dumps(message))
        if self.encryptor:
            data = self.encryptor.encrypt_at_time(data, int(_monotonic()))
        self.__writeBuffer += _HEADER.pack(len(data)) + data
        self.__trySendBuffer()


replace(TcpConnection, "send", _TcpConnection.send,
        "c1d9173c8e108f995c83ba89902ab91f475adc32d609cf5d2dfe26c10dc6737c",
        "zlib.compress set up a 32 KiB-window deflate state for every message: most of a small "
        "message's sending cost")
