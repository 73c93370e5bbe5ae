"""Serve a WSGI app with waitress: one process, threads, so Raft and HTTP share a state."""
from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from typing import Callable

from waitress.server import create_server

from bazar.cluster.config import Address

HTTP_THREADS = 16
DRAIN_SECONDS = 1.0   # how long requests in progress at SIGTERM may take to finish
FLUSH_SECONDS = 0.05  # then, for the event loop to send the answers they wrote


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
    server = create_server(counted, host=address.host, port=address.port, threads=HTTP_THREADS,
                           ident="bazar", channel_timeout=30, clear_untrusted_proxy_headers=True)
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
