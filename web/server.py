"""Serve a WSGI app with waitress: one process, threads, so Raft and HTTP share a state."""
from __future__ import annotations

import logging

from waitress.server import create_server

from cluster.config import Address

HTTP_THREADS = 16


def serve(app, address: Address) -> None:
    """Serve `app` on exactly `address` until the process is asked to stop."""
    server = create_server(app, host=address.host, port=address.port, threads=HTTP_THREADS,
                           ident="bazar", channel_timeout=30, clear_untrusted_proxy_headers=True)
    logging.getLogger("bazar").info("serving HTTP on %s", address.url)
    try:
        server.run()
    finally:
        server.close()
