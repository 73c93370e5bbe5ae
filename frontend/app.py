"""The frontend's public HTTP API (JSON), as a Flask app over a Gateway."""
from __future__ import annotations

import os

from flask import Flask, jsonify, request

from bazar import __version__
from bazar.frontend import pages
from bazar.frontend.gateway import Gateway
from bazar.web import errors, metrics
from bazar.web.admin import Admin, ready
from bazar.web.auth import require_bearer
from bazar.web.errors import json_body, unavailable


def create_app(gateway: Gateway, frontend_id: str = "frontend") -> Flask:
    app = Flask("bazar.frontend")
    admin = Admin(gateway.config)
    errors.install(app)
    app_metrics = metrics.Metrics()
    app_metrics.registry.register(metrics.FrontendCollector(gateway.cache, gateway.follower))
    metrics.instrument(app, app_metrics)
    pages.install_error_pages(app)
    pages.install_security_headers(app)

    def consistency() -> str:
        return request.args.get("consistency", "cached")

    @app.get("/search/<path:topic>")
    def search(topic: str):
        if pages.wants_html(request):
            return pages.render_search(gateway, topic)
        return jsonify(gateway.search(topic, consistency()))

    @app.get("/info/<raw_id>")
    @app.get("/lookup/<raw_id>")
    def info(raw_id: str):
        if pages.wants_html(request):
            return pages.render_info(gateway, raw_id)
        return jsonify(gateway.info(raw_id, consistency()))

    @app.post("/purchase/<raw_id>")
    @app.post("/buy/<raw_id>")
    def purchase(raw_id: str):
        if pages.is_form_purchase(request):
            return pages.render_purchase(gateway, raw_id, pages.submitted_key(request))
        return jsonify(gateway.purchase(raw_id, request.headers.get("Idempotency-Key")))

    @app.get("/orders")
    def orders():
        return jsonify(gateway.orders_list(request.args.get("limit")))

    @app.get("/orders/<order_id>")
    def order(order_id: str):
        return jsonify(gateway.order(order_id))

    def admin_authorization() -> str | None:
        """The request's Authorization header, once it has passed the admin check."""
        authorization = request.headers.get("Authorization")
        require_bearer(authorization, gateway.config.admin_token())
        return authorization

    @app.put("/books/<raw_id>")
    def update_book(raw_id: str):
        authorization = admin_authorization()
        return jsonify(gateway.update_book(raw_id, json_body(request), authorization,
                                           request.headers.get("Idempotency-Key")))

    @app.post("/books")
    def add_book():
        authorization = admin_authorization()
        return jsonify(gateway.add_book(json_body(request), authorization,
                                        request.headers.get("Idempotency-Key"))), 201

    @app.get("/cluster")
    def cluster():
        return jsonify(cluster_view())

    def cluster_view() -> dict:
        groups = admin.collect()
        return {"groups": groups, "ready": ready(groups),
                "frontend": {"id": frontend_id, "follower": gateway.follower.status()},
                "cache": gateway.cache.snapshot_stats(), "traffic": app_metrics.traffic()}

    pages.register_pages(app, gateway, cluster_view)

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok", id=frontend_id, pid=os.getpid(), version=__version__)

    @app.get("/readyz")
    def readyz():
        if not ready(admin.collect()):
            raise unavailable("a group has no leader with quorum")
        if not gateway.follower.caught_up():
            raise unavailable("this frontend has not caught up with the catalog log yet "
                              "(its cache is bypassed)")
        return jsonify(status="ready")

    return app
