"""The storefront's HTML pages, for people using a browser.

Browsers say `Accept: text/html`; every other client (curl's `*/*`, requests'
default, `fetch`) keeps getting the JSON API unchanged. Pages are rendered from
the Jinja templates in frontend/templates (autoescaped), over the same Gateway
the JSON routes use, so a page never knows more than the API does.

A shop lists its books: the home page shows every topic's books and a search
shows one topic's, each with its price, whether it is in stock and, when it is,
a Buy button (a form with a fresh idempotency key; one click buys one copy). Their
prices and stock are the cached, log-fenced reads of `GET /info/<id>`, so a page
of books read again costs cache hits, not replica calls. After a purchase the
confirmation links to the order's page.

`register_pages` adds the routes that exist only for people (`/`, the `/search`
form and `/dashboard`). The routes shared with the JSON API (`/search/<topic>`,
`/info/<id>`, `/purchase/<id>`, `/orders/<id>`) stay in frontend/app.py, which asks
`wants_html` and then calls `render_search`, `render_info`, `render_purchase` or
`render_order`. `install_error_pages` makes errors for browsers small HTML pages too.
"""
from __future__ import annotations

import datetime
import functools
import secrets
import uuid
from typing import Callable
from urllib.parse import quote

from flask import Blueprint, Flask, g, jsonify, redirect, render_template, request
from werkzeug.exceptions import HTTPException

from bazar.frontend.gateway import Gateway
from bazar.web import params
from bazar.web.errors import BadRequest
from bazar.web.errors import ApiError

FORM_MIMETYPE = "application/x-www-form-urlencoded"
HOME_BOOKS_PER_TOPIC = 10  # the home page shows this many of a topic's books; its search shows all
IDEMPOTENCY_FIELD = "idempotency_key"
BODY_HEADERS = ("Content-Type", "Content-Length")

ERROR_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported body type",
    500: "Something went wrong",
    502: "Bad answer from a replica",
    503: "Temporarily unavailable",
}

API_INDEX = {
    "name": "Bazar",
    "description": "A replicated online bookstore. Send Accept: text/html for the storefront.",
    "endpoints": {
        "GET /search/<topic>": "books on a topic (?consistency=cached|local|strong)",
        "GET /info/<id>": "one book: title, topic, price, stock",
        "POST /purchase/<id>": "buy one copy; send an Idempotency-Key header to retry safely",
        "GET /orders": "admin: the newest orders (?limit=N)",
        "GET /orders/<order_id>": "one order",
        "PUT /books/<id>": "admin: set price, stock or restock",
        "POST /books": "admin: add a book",
        "GET /cluster": "each replica's role and reachability, each group's leader and quorum; "
                        "with the admin token also terms, Raft indexes, lag and counters",
        "GET /metrics": "admin: Prometheus metrics of this frontend",
        "GET /healthz": "this frontend is up",
        "GET /readyz": "both groups have a leader with quorum",
    },
}

StatsProvider = Callable[[], dict]

# Pages run only the scripts and styles Bazar itself put there: every inline
# <script> and <style> carries this response's nonce, so injected markup runs
# nothing; no page may be framed (clickjacking a Buy button); forms post only here.
CSP = ("default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
       "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")


# -- content negotiation ------------------------------------------------------

def wants_html(req) -> bool:
    """True only when the Accept header ranks text/html above application/json.

    Ties go to JSON, so `*/*` (curl, requests, fetch) and a missing header get JSON. Those
    and `application/json` alone, what API clients send, are answered without parsing the
    header (every API client's read pays this on the hot path).
    """
    if req.headers.get("Accept") in (None, "", "*/*", "application/json"):
        return False
    return req.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"


def is_form_purchase(req) -> bool:
    """True for a purchase made from the Buy form of a book page.

    That is a browser (`wants_html`), or any client posting the form's fields
    (form-encoded with an `idempotency_key`). A bare form-encoded POST, such as
    `curl -d ''`, is still an API call and gets JSON.
    """
    return wants_html(req) or (req.mimetype == FORM_MIMETYPE and IDEMPOTENCY_FIELD in req.form)


def submitted_key(req) -> str | None:
    """The Idempotency-Key of a form purchase: the form's hidden field, else the header."""
    return req.form.get(IDEMPOTENCY_FIELD) or req.headers.get("Idempotency-Key")


# -- pages shared with the JSON routes ----------------------------------------

def _html_errors(render: Callable) -> Callable:
    """Wrap a page renderer so that API errors become HTML error pages."""
    @functools.wraps(render)
    def rendered(*args, **kwargs):
        try:
            return render(*args, **kwargs)
        except ApiError as exc:
            return render_error(exc.status, exc.message, exc.headers)
        except BadRequest as exc:
            return render_error(400, str(exc))
    return rendered


@_html_errors
def render_search(gateway: Gateway, topic: str):
    """The books on `topic`, each with its price, whether it is in stock and a Buy form."""
    result = gateway.search(topic)
    return render_template("search.html", topic=result["topic"], offers=_offers(gateway, result["items"]),
                           key_field=IDEMPOTENCY_FIELD)


def _offers(gateway: Gateway, items: list[dict]) -> list[dict]:
    """Each listed book (`items` as a search answers them: id and title) as the shop shows it:
    `book`, as `GET /info/<id>` answers it (the same cached, fenced read: a hit costs no
    replica call), and `key`, a fresh idempotency key for its Buy form.

    The books come from the cache and are never changed here. A read that fails fails the
    page (an HTML error page, as for every other page).
    """
    return [{"book": gateway.info(item["id"]), "key": uuid.uuid4().hex} for item in items]


@_html_errors
def render_info(gateway: Gateway, raw_id: str):
    """One book with a Buy form carrying a fresh idempotency key for this render."""
    book = gateway.info(raw_id)
    return render_template("info.html", book=book, idempotency_key=uuid.uuid4().hex,
                           key_field=IDEMPOTENCY_FIELD)


@_html_errors
def render_purchase(gateway: Gateway, raw_id: str, key: str | None):
    """Buy one copy with Idempotency-Key `key`: the confirmation, or why it failed.

    Sending the same key again shows the same order and takes no more stock.
    Out of stock is a 409 page, an unknown book a 404 page. (frontend/app.py has checked
    the request's Origin, as for every purchase: `require_same_origin`.)
    """
    try:
        order = gateway.purchase(raw_id, key)
    except ApiError as exc:
        if exc.status != 409:
            raise
        book = _book_or_none(gateway, raw_id)
        return render_template("out_of_stock.html", book=book, book_id=raw_id), 409
    return render_template("purchase.html", order=order)


@_html_errors
def render_order(gateway: Gateway, order_id: str):
    """One order (the page a purchase confirmation links to): its status, book and price.

    Read as `GET /orders/<id>` reads it (strongly, from the order leader); an unknown id is
    a 404 page. Like that route it needs no token: whoever knows an order's id chose it.
    """
    order = gateway.order(order_id)
    return render_template("order.html", order=order, placed=_utc_time(order.get("created_at")))


def _utc_time(timestamp) -> str | None:
    """A Unix time as a person reads it (UTC, to the minute); None when there is none."""
    if not isinstance(timestamp, (int, float)):
        return None
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def require_same_origin() -> None:
    """Refuse (403) a purchase that another site's page made a browser send.

    A page on any site can make its visitor's browser POST here without asking first,
    with a form (form-encoded or text/plain) or `fetch` with a text/plain body or none:
    so every purchase is checked, whatever its body, not only the Buy form's. Browsers
    name the page that sent such a POST in `Origin` (every current browser does); a page
    of this storefront names this host. A client that sends no Origin at all (curl,
    requests, any API client) is not a browser being tricked, and is let through.

    The host and port are compared, not the scheme: behind a TLS-terminating proxy
    that passes the browser's Host header on (docs/security.md), the page
    is https://shop while this process is spoken to in plain HTTP. Another site
    cannot put this store's host in its pages' Origin, whatever the scheme.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return
    scheme, _, host = origin.partition("://")
    if scheme not in ("http", "https") or host.rstrip("/").lower() != request.host.lower():
        raise ApiError(403, "a purchase with an Origin must come from this storefront's own pages "
                            "(API clients send no Origin)")


def render_error(status: int, message: str, headers: dict | None = None):
    """A small HTML error page with `status` (and `headers`); never a stack trace."""
    title = ERROR_TITLES.get(status, "Error")
    body = render_template("error.html", status=status, title=title, message=message)
    return body, status, dict(headers or {})


def _book_or_none(gateway: Gateway, raw_id: str) -> dict | None:
    """The book, if it can be read right now; pages use it only to say more."""
    try:
        return gateway.info(raw_id)
    except (ApiError, BadRequest):
        return None


# -- routes only people use ---------------------------------------------------

def register_pages(app: Flask, gateway: Gateway, stats_provider: StatsProvider) -> None:
    """Add `/` (home, or a JSON index of the API), the `/search` form and `/dashboard`.

    `stats_provider()` returns the dict `GET /cluster` answers a client without the admin
    token (the dashboard's script asks for the admin's view with the token it is given). The
    templates in frontend/templates become available to `render_*` too.
    """
    pages = Blueprint("pages", __name__, template_folder="templates")

    @pages.get("/")
    def home():
        if not wants_html(request):
            return jsonify(API_INDEX)
        return _render_home(gateway)

    @pages.get("/search")
    def search_form():
        topic = request.args.get("q", "").strip()
        if not topic:
            return redirect("/", code=303)
        return redirect("/search/" + quote(topic, safe=""), code=303)

    @pages.get("/dashboard")
    def dashboard():
        return render_template("dashboard.html", stats=stats_provider())

    app.register_blueprint(pages)


@_html_errors
def _render_home(gateway: Gateway):
    """Every topic, then up to HOME_BOOKS_PER_TOPIC of its books as a shelf (see `_offers`),
    so a shopper buys from here in one click, or finds a topic's books in one.

    Topics, searches and books are all cached reads: a home page read again while nothing
    changed asks no replica.
    """
    shelves = []
    for topic in filter(_searchable, gateway.topics()):
        items = gateway.search(topic)["items"]
        shelves.append((topic, _offers(gateway, items[:HOME_BOOKS_PER_TOPIC]), len(items)))
    return render_template("home.html", shelves=shelves, key_field=IDEMPOTENCY_FIELD)


def _searchable(topic: str) -> bool:
    """Whether `GET /search/<topic>` can ask for `topic`. A book's topic may hold what a
    search path may not (a control character): such a topic is left off the home page,
    whose every shelf links to its search, rather than failing the whole page."""
    try:
        params.topic(topic)
    except BadRequest:
        return False
    return True


# -- errors -------------------------------------------------------------------

def install_security_headers(app: Flask) -> None:
    """Give every answer `X-Content-Type-Options: nosniff`, and every HTML page a
    Content-Security-Policy with a fresh nonce (templates call `csp_nonce()`)."""
    @app.context_processor
    def _nonce():
        return {"csp_nonce": csp_nonce}

    @app.after_request
    def _headers(response):
        response.headers["X-Content-Type-Options"] = "nosniff"
        if response.mimetype == "text/html":
            response.headers["Content-Security-Policy"] = CSP.format(nonce=csp_nonce())
            response.headers["X-Frame-Options"] = "DENY"
            response.headers["Referrer-Policy"] = "same-origin"
        return response


def csp_nonce() -> str:
    """This response's nonce: one unguessable value per request, shared by all its tags."""
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(16)
    return g.csp_nonce


def install_error_pages(app: Flask) -> None:
    """Answer errors to browsers with HTML pages; every other client keeps JSON errors.

    Call after `web.errors.install(app)`: each of its JSON handlers is kept and
    decides status, message and headers; browsers get that as a page.
    """
    handlers = app.error_handler_spec[None][None]
    for exc_class, json_handler in list(handlers.items()):
        app.register_error_handler(exc_class, _html_for_browsers(json_handler))


def _html_for_browsers(json_handler: Callable) -> Callable:
    """An error handler that gives `json_handler`'s answer as HTML to browsers."""
    @functools.wraps(json_handler)
    def handle(exc: Exception):
        response = json_handler(exc)
        if not wants_html(request):
            return response
        message = (response.get_json(silent=True) or {}).get("error", _fallback_message(exc))
        headers = {name: value for name, value in response.headers.items() if name not in BODY_HEADERS}
        return render_error(response.status_code, message, headers)
    return handle


def _fallback_message(exc: Exception) -> str:
    return exc.name.lower() if isinstance(exc, HTTPException) else "internal error"
