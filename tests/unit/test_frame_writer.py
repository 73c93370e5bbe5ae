"""How a Raft connection writes a frame (consensus/frame_writer.py): the bytes PySyncObj's
own reader expects, compressed without paying for a 32 KiB window on every message."""
from __future__ import annotations

import struct
import zlib

import pysyncobj.pickle as pysyncobj_pickle
from cryptography.fernet import Fernet
from pysyncobj.tcp_connection import TcpConnection

import bazar.consensus  # noqa: F401  (installs the corrections)

MESSAGE = {"type": "append_entries", "term": 3, "commit_index": 41, "prevLogIdx": 41, "prevLogTerm": 3,
           "entries": [(b"\x01" + b"purchase" * 40, 42, 3)]}


def connection(encryptor=None) -> TcpConnection:
    """A TcpConnection with no socket: what `send` writes stays in its buffer."""
    conn = TcpConnection.__new__(TcpConnection)
    conn.sendRandKey = conn.recvRandKey = None
    conn.recvLastTimestamp = 0
    conn.encryptor = encryptor
    conn._TcpConnection__writeBuffer = b""
    conn._TcpConnection__readBuffer = b""
    conn._TcpConnection__socket = None
    conn._TcpConnection__trySendBuffer = lambda: None
    return conn


def sent_frame(conn: TcpConnection) -> bytes:
    conn.send(MESSAGE)
    buffer = conn._TcpConnection__writeBuffer
    (length,) = struct.unpack_from("i", buffer)
    assert len(buffer) == 4 + length
    return buffer[4:]


def test_a_frame_is_compressed_with_a_small_window_not_zlibs_default():
    """zlib.compress allocates and clears a 32 KiB window and its tables for every call:
    about 0.13 ms per message here, ten times the rest of the send. Raft messages are small."""
    data = sent_frame(connection())
    assert data[0] >> 4 == 4, f"window of 2**{(data[0] >> 4) + 8} bytes"   # zlib's CINFO: 2**(4+8) = 4 KiB
    assert pysyncobj_pickle.loads(zlib.decompress(data)) == MESSAGE


def test_what_is_sent_is_read_back_by_pysyncobjs_own_parser_encrypted_and_with_a_session_key():
    fernet = Fernet(Fernet.generate_key())
    sender, receiver = connection(fernet), connection(fernet)
    sender.sendRandKey = receiver.recvRandKey = b"k" * 32
    receiver._TcpConnection__readBuffer = sender._TcpConnection__writeBuffer or (sender.send(MESSAGE) or
                                                                               sender._TcpConnection__writeBuffer)
    assert receiver._TcpConnection__processParseMessage() == MESSAGE
    assert receiver._TcpConnection__readBuffer == b""
