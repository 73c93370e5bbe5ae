"""What the frontend does for each public request, independent of HTTP routing.

Reads go to the catalog replicas, writes to the leader of the right group.
Answers are plain dicts; failures are ApiErrors with the status to send.
"""
from __future__ import annotations

import requests

from cluster.config import ClusterConfig
from node import commands
from web.client import INDEX_HEADER, GroupClient, Unavailable
from web.errors import ApiError

RETRY_AFTER = {"Retry-After": "1"}
CONSISTENCY_LEVELS = ("cached", "local", "strong")


class Gateway:
    """The public API over the catalog and order groups."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        secret = config.secret()
        timeout = config.raft.commit_timeout + 1.0
        self.catalog = GroupClient([n.http.url for n in config.catalog], secret, timeout)
        self.orders = GroupClient([n.http.url for n in config.order], secret, timeout)

    # -- reads ----------------------------------------------------------------

    def info(self, raw_id: str, consistency: str = "cached") -> dict:
        book_id = commands.book_id(raw_id)
        body, _ = self._catalog_read(f"/books/{book_id}", consistency)
        return body

    def search(self, raw_topic: str, consistency: str = "cached") -> dict:
        topic = commands.topic(raw_topic)
        body, _ = self._catalog_read(f"/search/{requests.utils.quote(topic, safe='')}", consistency)
        return {"topic": topic, "items": body["items"]}

    def topics(self) -> list[str]:
        body, _ = self._catalog_read("/topics", "local")
        return body["topics"]

    def orders_list(self, raw_limit: str | None) -> dict:
        limit = commands.limit(raw_limit)
        return self._checked(self.orders.read, f"/orders?limit={limit}")

    def order(self, order_id: str) -> dict:
        return self._checked(self.orders.read, f"/orders/{requests.utils.quote(order_id, safe='')}")

    # -- writes ---------------------------------------------------------------

    def purchase(self, raw_id: str, idempotency_key: str | None) -> dict:
        """Buy one copy; the same Idempotency-Key always yields the same single order."""
        command = commands.purchase(raw_id, idempotency_key or "")
        book_id, order_id = command["id"], command["order_id"]
        self.info(str(book_id), "local")  # 404 for unknown books before any order is recorded
        order = self._checked(self.orders.write, "POST", "/purchase", {"id": book_id, "order_id": order_id})
        return purchase_answer(order)

    def update_book(self, raw_id: str, body, authorization: str | None) -> dict:
        command = commands.update_book(raw_id, body)
        payload = {k: v for k, v in command.items() if k not in ("op", "id")}
        return self._checked(self.catalog.write, "PUT", f"/books/{command['id']}", payload,
                             headers=_auth(authorization))

    def add_book(self, body, authorization: str | None) -> dict:
        command = commands.add_book(body)
        payload = {k: v for k, v in command.items() if k != "op"}
        return self._checked(self.catalog.write, "POST", "/books", payload, headers=_auth(authorization))

    # -- plumbing -------------------------------------------------------------

    def _catalog_read(self, path: str, consistency: str) -> tuple[dict, int]:
        if consistency not in CONSISTENCY_LEVELS:
            raise ApiError(400, "consistency must be one of cached, local, strong")
        level = "strong" if consistency == "strong" else "local"
        sep = "&" if "?" in path else "?"
        try:
            response = self.catalog.read(f"{path}{sep}consistency={level}")
        except Unavailable:
            raise ApiError(503, "no catalog replica is reachable", RETRY_AFTER) from None
        body = _json_or_error(response)
        return body, int(response.headers.get(INDEX_HEADER, 0))

    def _checked(self, call, *args, **kwargs) -> dict:
        try:
            response = call(*args, **kwargs)
        except Unavailable:
            raise ApiError(503, "no replica of the group is reachable", RETRY_AFTER) from None
        return _json_or_error(response)


def purchase_answer(order: dict) -> dict:
    """The client's view of an order: 200 when completed, else the matching error."""
    status = order.get("status")
    if status == "completed":
        return {"order_id": order["order_id"], "id": order["id"], "title": order["title"],
                "price": order["price"]}
    if status == "failed":
        if order.get("error") == "not_found":
            raise ApiError(404, f"no book with id {order['id']}")
        raise ApiError(409, f"book {order['id']} is out of stock")
    raise ApiError(503, "the purchase is recorded but not yet decided; retry with the same "
                        "Idempotency-Key to learn its outcome", RETRY_AFTER)


def _auth(authorization: str | None) -> dict:
    return {"Authorization": authorization} if authorization else {}


def _json_or_error(response: requests.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        raise ApiError(502, "a replica sent an unreadable answer") from None
    if response.status_code >= 400:
        headers = {"Retry-After": response.headers["Retry-After"]} if "Retry-After" in response.headers else {}
        raise ApiError(response.status_code, body.get("error", "error"), headers)
    return body
