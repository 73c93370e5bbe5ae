"""Serve a WSGI app with waitress: one process, threads, so Raft and HTTP share a state."""
from __future__ import annotations

import logging
import signal
import sys
from typing import Callable

from waitress.server import create_server

from bazar.cluster.config import Address

HTTP_THREADS = 16


def serve(app, address: Address, on_stop: Callable[[], None] = lambda: None) -> None:
    """Serve `app` on exactly `address` until SIGTERM or Ctrl-C, then call `on_stop`."""
    server = create_server(app, host=address.host, port=address.port, threads=HTTP_THREADS,
                           ident="bazar", channel_timeout=30, clear_untrusted_proxy_headers=True)
    logging.getLogger("bazar").info("serving HTTP on %s", address.url)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        on_stop()
