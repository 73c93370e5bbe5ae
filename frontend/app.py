"""The frontend's public HTTP API (JSON), as a Flask app over a Gateway."""
from __future__ import annotations

from flask import Flask, jsonify, request

from bazar import __version__
from bazar.frontend import pages
from bazar.frontend.gateway import Gateway
from bazar.web import errors, metrics, params
from bazar.web.admin import Admin, Recent, ready
from bazar.web.auth import is_admin as holds_admin_token, require_allowed_host, require_bearer
from bazar.web.errors import json_body, unavailable


PRIVATE_NODE_FIELDS = frozenset({"http", "raft"})
# How old the groups' view that /cluster, /readyz and the dashboard show may be. Each view
# costs a signed /status to every replica: shared by every caller for this long, any number
# of anonymous calls cost the replicas at most one such round per period.
CLUSTER_VIEW_SECONDS = 0.5


def create_app(gateway: Gateway, frontend_id: str | None = None, admin_token: str | None = None) -> Flask:
    """The frontend `frontend_id` of the cluster file (the first by default; ConfigError for
    a name the file has not). `admin_token`: the token admin routes need
    (ClusterConfig.admin_token_for_this_process); None: the store has no admin (403)."""
    frontend_id = gateway.config.frontend(frontend_id).id
    app = Flask("bazar.frontend")
    admin = Admin(gateway.config, also_ask=gateway.replica_urls)
    groups_view = Recent(admin.collect, CLUSTER_VIEW_SECONDS)
    allowed_hosts = gateway.config.allowed_hosts(gateway.config.frontend(frontend_id))
    errors.install(app)
    app_metrics = metrics.Metrics()
    app_metrics.registry.register(metrics.FrontendCollector(gateway.cache, gateway.follower))
    metrics.instrument(app, app_metrics)
    pages.install_error_pages(app)
    pages.install_security_headers(app)

    @app.before_request
    def _only_our_host_names():
        """Refused at the edge (421), before any route runs: a name rebound to this machine."""
        require_allowed_host(request.environ.get("HTTP_HOST"), allowed_hosts)

    @app.before_request
    def _no_dot_segments():
        """Refused at the edge (400), before any route passes a `..` on to a replica."""
        params.without_dot_segments(request.path)

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
        pages.require_same_origin()  # any body: a cross-site page can send text/plain or none
        if pages.is_form_purchase(request):
            return pages.render_purchase(gateway, raw_id, pages.submitted_key(request))
        return jsonify(gateway.purchase(raw_id, request.headers.get("Idempotency-Key")))

    def is_admin() -> bool:
        return holds_admin_token(request.headers.get("Authorization"), admin_token)

    def require_admin() -> None:
        """Checked before the body is read (no parse for an anonymous caller)."""
        require_bearer(request.headers.get("Authorization"), admin_token)

    @app.get("/orders")
    def orders():
        """The newest orders, for the admin only: their ids are the buyers' Idempotency-Keys,
        and one who read a key could use it first and block that buyer's purchase. One
        order, by its id, stays public: whoever knows the id chose it."""
        require_admin()
        return jsonify(gateway.orders_list(request.args.get("limit")))

    @app.get("/orders/<order_id>")
    def order(order_id: str):
        if pages.wants_html(request):
            return pages.render_order(gateway, order_id)
        return jsonify(gateway.order(order_id))


    @app.put("/books/<raw_id>")
    def update_book(raw_id: str):
        require_admin()
        return jsonify(gateway.update_book(raw_id, json_body(request),
                                           request.headers.get("Idempotency-Key")))

    @app.post("/books")
    def add_book():
        require_admin()
        return jsonify(gateway.add_book(json_body(request), request.headers.get("Idempotency-Key"))), 201

    @app.get("/cluster")
    def cluster():
        return jsonify(cluster_view(private=is_admin()))

    def cluster_view(private: bool = False) -> dict:
        """Roles, terms and indexes for all; where each process listens (Raft and HTTP) only
        for the admin: an address is the first thing an attack on a Raft port needs. (The
        dashboard, a page without a token, shows the public view.) At most
        CLUSTER_VIEW_SECONDS old, and shared: it is copied, never changed."""
        groups = groups_view.get()
        if not private:
            groups = {name: {**group, "nodes": [{k: v for k, v in n.items() if k not in PRIVATE_NODE_FIELDS}
                                                for n in group["nodes"]]}
                      for name, group in groups.items()}
        return {"groups": groups, "ready": ready(groups),
                "frontend": {"id": frontend_id, "follower": gateway.follower.status()},
                "cache": gateway.cache.snapshot_stats(), "traffic": app_metrics.traffic()}

    pages.register_pages(app, gateway, cluster_view)

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok", id=frontend_id, version=__version__)

    @app.get("/readyz")
    def readyz():
        if not ready(groups_view.get()):
            raise unavailable("a group has no leader with quorum")
        if not gateway.follower.caught_up():
            raise unavailable("this frontend has not caught up with the catalog log yet "
                              "(its cache is bypassed)")
        return jsonify(status="ready")

    return app
