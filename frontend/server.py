"""Run one frontend process."""
from __future__ import annotations

import logging

from bazar.cluster.config import ClusterConfig
from bazar.frontend.app import create_app
from bazar.frontend.follower import CatalogFollower
from bazar.frontend.gateway import Gateway
from bazar.web.server import serve

log = logging.getLogger("bazar.frontend")


def run(config: ClusterConfig, frontend_id: str | None = None) -> None:
    """Serve frontend `frontend_id` (the first in the file by default) until SIGTERM or Ctrl-C."""
    frontend = config.frontend(frontend_id)
    follower = CatalogFollower(config, source_host=frontend.source_host)
    app = create_app(Gateway(config, follower, source_host=frontend.source_host), frontend.id,
                     admin_token=config.admin_token_for_this_process())
    log.info("%s: storefront and API on %s", frontend.id, frontend.http.url)
    serve(app, frontend.bind(frontend.http), on_stop=follower.close)
