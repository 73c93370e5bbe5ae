"""Run one frontend process."""
from __future__ import annotations

import logging
import signal
import sys

from cluster.config import ClusterConfig
from frontend.app import create_app
from frontend.follower import CatalogFollower
from frontend.gateway import Gateway
from web.server import serve

log = logging.getLogger("bazar.frontend")


def run(config: ClusterConfig, frontend_id: str | None = None) -> None:
    """Serve frontend `frontend_id` (the first in the file by default) until SIGTERM."""
    frontend = config.frontend(frontend_id)
    follower = CatalogFollower(config, source_host=frontend.http.host)
    app = create_app(Gateway(config, follower, source_host=frontend.http.host), frontend.id)
    log.info("%s: storefront and API on %s", frontend.id, frontend.http.url)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        serve(app, frontend.http)
    except KeyboardInterrupt:
        pass
    finally:
        follower.close()
