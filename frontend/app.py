"""The frontend's public HTTP API (JSON), as a Flask app over a Gateway."""
from __future__ import annotations

from flask import Flask, jsonify, request

from bazar import __version__
from bazar.frontend import pages
from bazar.frontend.gateway import Gateway
from bazar.web import errors, metrics, params
from bazar.web.admin import Admin, Recent, ready
from bazar.web.auth import require_allowed_host, require_bearer
from bazar.web.errors import json_body, unavailable


# What a client without the admin token sees of the cluster: health, never a number. An
# allow-list, so a field /status gains later stays the admin's until it is put here. No Raft
# index, commit count, request or cache counter (each grows with every sale, so two reads
# would tell the store's sales between them), no term (it counts elections: an attacker's
# measure of the disruption he causes), no address (the first thing an attack on a Raft
# port needs).
PUBLIC_GROUP_FIELDS = ("leader", "has_quorum", "serving")
PUBLIC_NODE_FIELDS = ("id", "group", "reachable", "role")
PUBLIC_FOLLOWER_FIELDS = ("caught_up",)
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

    def require_admin() -> None:
        """Checked before the body is read (no parse for an anonymous caller)."""
        require_bearer(request.headers.get("Authorization"), admin_token)

    app_metrics = metrics.Metrics()
    app_metrics.registry.register(metrics.FrontendCollector(gateway.cache, gateway.follower))
    gateway.checkout.stages = metrics.purchase_stages(app_metrics)  # this frontend coordinates purchases
    # The frontend's port is public, and its request and cache counters count the sales:
    # Prometheus scrapes it with the admin token (a replica's /metrics, on the private
    # network, needs none).
    metrics.instrument(app, app_metrics, authorize=require_admin)
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
        if not request.environ.get("QUERY_STRING"):  # the usual read: no query string to parse
            return "cached"
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
        """The public view to a caller who sends no Authorization; the whole view to the
        admin; 401 to a wrong token (so a dashboard given a mistyped one says so, rather
        than quietly showing less)."""
        if "Authorization" in request.headers:
            require_admin()
            return jsonify(cluster_view(private=True))
        return jsonify(cluster_view())

    def cluster_view(private: bool = False) -> dict:
        """For the admin (`private`): each replica's role, term, commit and applied index,
        commit totals and addresses, this frontend's follower lag, its cache counters and
        request histogram (what the dashboard charts). For anyone else: roles, leaders,
        quorum, reachability and readiness only (PUBLIC_*_FIELDS). The dashboard page
        embeds the public view; its script asks for the admin's with the token it is given.
        At most CLUSTER_VIEW_SECONDS old, and shared: it is copied, never changed."""
        groups = groups_view.get()
        follower = gateway.follower.status()
        if not private:
            return {"view": "public", "groups": _public_groups(groups), "ready": ready(groups),
                    "frontend": {"id": frontend_id, "follower": _only(follower, PUBLIC_FOLLOWER_FIELDS)}}
        return {"view": "admin", "groups": groups, "ready": ready(groups),
                "frontend": {"id": frontend_id, "follower": follower},
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


def _only(fields: dict, names: tuple) -> dict:
    return {name: fields[name] for name in names if name in fields}


def _public_groups(groups: dict) -> dict:
    return {name: {**_only(group, PUBLIC_GROUP_FIELDS),
                   "nodes": [_only(node, PUBLIC_NODE_FIELDS) for node in group["nodes"]]}
            for name, group in groups.items()}
