"""Serve a WSGI app with waitress: one process, threads, so Raft and HTTP share a state.

Waitress reads every request in full on its event loop before a thread gets it,
so its own limits are the first line against hostile clients:

- a body over `MAX_BODY_BYTES` (the JSON limit, web/errors.py) is refused with 413
  as soon as its Content-Length says so (or when a chunked body passes it), never
  buffered to a temporary file (waitress's default allows 1 GiB);
- headers over `MAX_HEADER_BYTES` are refused with 431;
- up to `CONNECTION_LIMIT` connections are held, so 150 slowloris connections that
  trickle headers do not shut out fresh clients (waitress's default is 100), and
  one idle for `IDLE_SECONDS` is closed;
- a request must arrive whole within `REQUEST_SECONDS` of its first byte, or its
  connection is closed (`Channel`): waitress itself has no such deadline, so a client
  sending a byte every few seconds on each of `CONNECTION_LIMIT` connections held them
  all, for ever;
- waitress's own error answers (400, 413, 431, ...) are JSON `{"error": ...}` like
  Bazar's, instead of its plain text.

The same limits hold on every Bazar process: the frontends and the replicas, whose
HTTP ports the threat model lets anyone on the network reach, are served here alike.

How it fails: a client that opens connections faster than `REQUEST_SECONDS` lets them
go can still keep `CONNECTION_LIMIT` of them busy (a flood from many addresses, which
only a firewall or a proxy with rate limits stops; docs/security.md).
"""
from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from typing import Callable

from waitress.channel import HTTPChannel
from waitress.server import create_server
from waitress.task import ErrorTask

from bazar.cluster.config import Address
from bazar.web.errors import MAX_BODY_BYTES

HTTP_THREADS = 16
# glibc gives each thread that allocates its own malloc arena, up to 8 per core, and each
# arena keeps the memory freed in it for that arena alone. The HTTP threads take turns at
# requests, so a busy process's arenas each grow to their own high-water mark: in a 60k
# soak the leaders crept ~0.55 MiB per 10,000 purchases, in thread arenas, with 9 of them;
# capped at 2, ~0.1-0.2 (bench/results/soak.txt). Two are enough: the GIL lets one thread
# run Python at a time.
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # mallopt's parameter number for the arena cap (glibc's malloc.h)
MAX_HEADER_BYTES = 32 * 1024
CONNECTION_LIMIT = 1000   # fds: each process raises its soft limit if it must (see serve)
IDLE_SECONDS = 15
REQUEST_SECONDS = 10  # from a request's first byte to its last (headers and a body of 64 KiB)
CLEANUP_SECONDS = 2   # how often connections are checked against both limits
DRAIN_SECONDS = 1.0   # how long requests in progress at SIGTERM may take to finish
FLUSH_SECONDS = 0.05  # then, for the event loop to send the answers they wrote


class JsonErrorTask(ErrorTask):
    """Waitress's answer to a request it could not parse or accept, as JSON."""

    def execute(self):
        error = self.request.error
        body = json.dumps({"error": f"{error.reason}: {error.body}"}).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class Channel(HTTPChannel):
    """A connection: waitress's, with JSON errors and a deadline for each request.

    `request_started` is when the first byte of the request being read (not yet whole)
    arrived, None between requests. `overdue(now)`: that request has taken longer than
    `REQUEST_SECONDS`, however steadily its bytes trickle in (each byte resets the idle
    timer, never this deadline)."""

    error_task_class = JsonErrorTask
    request_started: float | None = None

    def received(self, data):
        reading = self.request
        result = super().received(data)
        if self.request is None:
            self.request_started = None  # every byte so far made whole requests
        elif self.request is not reading:
            self.request_started = time.time()  # a new request began in this data
        return result

    def overdue(self, now: float) -> bool:
        return self.request_started is not None and now - self.request_started > REQUEST_SECONDS


def _close_overdue(server) -> None:
    """Make `server`'s periodic maintenance (the idle check) also close every connection
    whose request is overdue (Channel.overdue). Waitress closes a channel marked
    `will_close` from its event loop, as it does an idle one."""
    idle_check = server.maintenance

    def maintenance(now: float) -> None:
        idle_check(now)
        for channel in list(server.active_channels.values()):
            if isinstance(channel, Channel) and channel.overdue(now):
                channel.will_close = True

    server.maintenance = maintenance


class _InFlight:
    """WSGI middleware counting the requests being answered, so that a server told to stop
    can let them finish first (a client would otherwise have to retry them elsewhere)."""

    def __init__(self, app) -> None:
        self.app = app
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self._lock:
            self.count += 1
        try:
            return self.app(environ, start_response)  # Flask builds the whole body here
        finally:
            with self._lock:
                self.count -= 1

    def drain(self, timeout: float) -> None:
        """Wait until no request is being answered (or `timeout` passes)."""
        deadline = time.monotonic() + timeout
        while self.count and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(FLUSH_SECONDS)


def serve(app, address: Address, on_stop: Callable[[], None] = lambda: None,
          before_stop: Callable[[], None] = lambda: None) -> None:
    """Serve `app` on exactly `address` until SIGTERM or Ctrl-C, then call `on_stop`.

    On SIGTERM the server keeps serving while `before_stop` runs (in a thread of its own:
    a leader hands its role over there, and requests arriving meanwhile are answered,
    naming the new leader) and while the requests in progress finish, up to
    DRAIN_SECONDS; then it stops. A second SIGTERM, or Ctrl-C, stops it at once.
    """
    counted = _InFlight(app)
    _allow_descriptors(CONNECTION_LIMIT + 256)
    server = create_server(counted, host=address.host, port=address.port, threads=HTTP_THREADS,
                           ident="bazar", clear_untrusted_proxy_headers=True,
                           max_request_body_size=MAX_BODY_BYTES,
                           max_request_header_size=MAX_HEADER_BYTES,
                           connection_limit=CONNECTION_LIMIT, channel_timeout=IDLE_SECONDS,
                           cleanup_interval=CLEANUP_SECONDS, asyncore_use_poll=True)
    server.channel_class = Channel
    _close_overdue(server)
    logging.getLogger("bazar").info("serving HTTP on %s", address.url)
    main_thread = threading.get_ident()
    leaving = threading.Event()

    def leave() -> None:
        try:
            before_stop()
            counted.drain(DRAIN_SECONDS)
        finally:
            # Signals are handled in the main thread, which runs the event loop: this
            # second SIGTERM wakes it and stops it.
            signal.pthread_kill(main_thread, signal.SIGTERM)

    def on_sigterm(*_) -> None:
        if leaving.is_set():
            sys.exit(0)
        leaving.set()
        threading.Thread(target=leave, name="leaving", daemon=True).start()

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        on_stop()


def cap_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas at `arenas` (see MALLOC_ARENAS); True if done. Call it first
    thing in a process, before threads allocate. Nothing is done when MALLOC_ARENA_MAX is
    set (the operator's choice, which glibc read itself) or the C library is not glibc."""
    import ctypes

    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "gnu_get_libc_version"):  # musl, macOS: no such arenas, no such option
        return False
    return libc.mallopt(_M_ARENA_MAX, arenas) == 1


def _allow_descriptors(wanted: int) -> None:
    """Raise this process's soft limit on open files to `wanted` if the hard limit allows."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
