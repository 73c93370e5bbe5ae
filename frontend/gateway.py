"""What the frontend does for each public request, independent of HTTP routing.

Reads are answered at the consistency the client asks for:
- `cached` (default): from the LRU if the key is there and the follower is caught
  up; otherwise from a replica that has applied at least the key's fence.
- `local`: skip the cache; a replica, at least as new as the key's fence.
- `strong`: by the catalog leader at a confirmed read index (linearizable; the
  order reads are always this strong). Nothing is appended to the log.
Writes go to the leader of the right group; afterwards the keys they changed
are fenced here at the write's index (read-your-writes through this frontend).
Answers are plain dicts; failures are ApiErrors with the status to send.
"""
from __future__ import annotations

from urllib.parse import quote

from bazar.cluster.config import ClusterConfig
from bazar.frontend.checkout import Checkout
from bazar.frontend.follower import CatalogFollower
from bazar.node.catalog import commands, keys_changed
from bazar.node.catalog.commands import info_key, search_key, topics_key
from bazar.web import params
from bazar.web.client import GroupClient, Refused, Reply, Unavailable
from bazar.web.errors import ApiError, unavailable
from bazar.web.protocol import INDEX_HEADER, RETRY_AFTER_HEADER
CONSISTENCY_LEVELS = ("cached", "local", "strong")
# What anyone who knows an order's id sees of it. Not its `seq` (it numbers every order the
# store took) nor its `catalog_index` (every catalog write): between two orders, either
# tells the store's sales. The replicas keep both (recovery finishes pending orders by seq).
PUBLIC_ORDER_FIELDS = ("order_id", "id", "status", "title", "price", "error", "created_at")
CATALOG_ATTEMPT_TIMEOUT = 1.0  # seconds one catalog replica may take before the next is tried


class Gateway:
    """The public API over the catalog and order groups, with a log-fenced cache."""

    def __init__(self, config: ClusterConfig, follower: CatalogFollower, source_host: str | None = None) -> None:
        self.config = config
        self.follower = follower
        self.cache = follower.cache
        secret = config.secret()
        self.write_timeout = config.raft.commit_timeout + 1.0
        # A catalog write is one commit: a replica silent for a second is paused or cut off.
        # A purchase spans both groups, so an order replica gets the whole commit timeout.
        self.catalog = GroupClient([n.http.url for n in config.catalog], secret, self.write_timeout,
                                   source_host, write_attempt_timeout=CATALOG_ATTEMPT_TIMEOUT)
        self.orders = GroupClient([n.http.url for n in config.order], secret, self.write_timeout,
                                  source_host, write_attempt_timeout=config.raft.commit_timeout + 0.5)
        # Purchases go to the catalog from here, their records on to the order group.
        self.checkout = Checkout(self.catalog, self.orders, follower, config.raft.commit_timeout)

    # -- reads ----------------------------------------------------------------

    def info(self, raw_id: str | int, consistency: str = "cached") -> dict:
        book_id = commands.book_id(raw_id)
        return self._catalog_read(info_key(book_id), f"/books/{book_id}", consistency,
                                  lambda m: m.book(book_id))

    def search(self, raw_topic: str, consistency: str = "cached") -> dict:
        topic = params.topic(raw_topic)
        body = self._catalog_read(search_key(topic), f"/search/{quote(topic, safe='')}", consistency,
                                  lambda m: {"topic": topic, "items": m.search(topic)})
        return {"topic": topic, "items": body["items"]}

    def topics(self) -> list[str]:
        """Every topic, read like a search (cached; only an added book changes the list, and
        its log entry fences the topics key as it does its topic's search)."""
        return self._catalog_read(topics_key(), "/topics", "cached", lambda m: {"topics": m.topics()})["topics"]

    def orders_list(self, raw_limit: str | None) -> dict:
        """The newest orders as the order leader sees them (every acknowledged purchase)."""
        limit = params.limit(raw_limit)
        return self._checked(self.orders.read, f"/orders?limit={limit}&consistency=strong",
                             prefer_leader=True)

    def order(self, order_id: str) -> dict:
        """One order as its buyer may see it (PUBLIC_ORDER_FIELDS), read on the order leader.

        An order whose outcome the order group has not recorded yet is shown as the catalog
        decided it (node/orders/purchase.py), so right after a purchase's 200 this shows it
        completed; 503 (retry) while neither group can say."""
        order = self._checked(self.orders.read, f"/orders/{quote(order_id, safe='')}?consistency=strong",
                              prefer_leader=True)
        return {key: order[key] for key in PUBLIC_ORDER_FIELDS if key in order}

    # -- writes ---------------------------------------------------------------

    def purchase(self, raw_id: str, idempotency_key: str | None) -> dict:
        """Buy one copy; the same Idempotency-Key always yields the same single order.

        Answered once the catalog has committed the stock take (or its refusal), asked by
        this frontend (frontend/checkout.py): the order group records the outcome without
        making the buyer wait, and every read of the order (`order`, `orders_list`) shows it
        as answered from then on. A 503 leaves the outcome unknown: retry with the same key
        to learn it."""
        command = commands.purchase(raw_id, idempotency_key or "")
        self._require_book(command.id)
        self._follow_catalog_members()
        order, index = self.checkout.buy(command.id, command.order_id)
        if index:
            # The catalog's result, as the order records it: a copy taken changed the book.
            taken = {"ok": order.get("status") == "completed", "id": command.id}
            self._see_own_write(command, taken, index)
        return purchase_answer(order)

    def _require_book(self, book_id: int) -> None:
        """404 for an unknown book, before any order is recorded.

        Books are never deleted, so a book this frontend's follower has applied exists;
        only for a book it has not seen (yet) is the catalog leader asked (a strong read): a
        follower that has not applied the book yet would call a book that exists unknown.
        """
        known, _ = self.follower.state.read(lambda m: book_id in m.books)
        if not known:
            self.info(book_id, consistency="strong")

    def update_book(self, raw_id: str, body, idempotency_key: str | None = None) -> dict:
        """An admin write (the caller has checked the admin token; replicas trust this
        frontend's signature, so the token itself never leaves the frontend)."""
        command = commands.update_book(raw_id, body, idempotency_key)
        payload = {k: v for k, v in commands.fields(command).items() if k != "id"}
        book, index = self._catalog_write("PUT", f"/books/{command.id}", payload)
        self._see_own_write(command, {"ok": True, "book": book}, index)
        return book

    def add_book(self, body, idempotency_key: str | None = None) -> dict:
        command = commands.add_book(body, idempotency_key)
        payload = commands.fields(command)
        book, index = self._catalog_write("POST", "/books", payload)
        self._see_own_write(command, {"ok": True, "book": book}, index)
        return book

    def _see_own_write(self, command: commands.Command, result: dict, index: int) -> None:
        """Read-your-writes: fence the keys the write changed (the same table the follower
        invalidates from) at its index. The answer does not wait for this frontend's follower
        to apply the write (it learns the commit with the leader's next round, at the latest
        its next heartbeat): until it has, a read of those keys misses the cache and is
        answered by the catalog leader, which applied the write before answering it."""
        for key in keys_changed(commands.to_wire(command), result) or ():
            self.cache.invalidate(key, index)

    # -- plumbing -------------------------------------------------------------

    def _catalog_read(self, key: tuple, path: str, consistency: str, view) -> dict:
        """Answer from the cache, a replica at least as new as the key's fence, or the log.

        A cache miss is filled from this frontend's own follower when it may serve it: in
        touch with its leader (the rule a replica's local read follows) and at least as new
        as the key's fence. `view` is that read of the catalog state, the same method the
        replica's route calls; None (an unknown book) is left to a replica to answer."""
        if consistency not in CONSISTENCY_LEVELS:
            raise ApiError(400, "consistency must be one of cached, local, strong")
        if consistency == "strong":
            # Only the leader serves these (others answer 503 naming it): ask it first.
            body, _ = self._catalog_get(f"{path}?consistency=strong", attempt_timeout=CATALOG_ATTEMPT_TIMEOUT,
                                        prefer_leader=True)
            return body
        if consistency == "cached":
            hit = self.cache.get(key)
            if hit is not None:
                return hit
            own = self._own_read(key, view)
            if own is not None:
                return own
        # Until the follower has caught up, this frontend's fences may not know every change
        # (it just started, or lost touch): ask the leader, which has applied every commit.
        # So too for a key fenced by this frontend's own write that its follower has not
        # applied yet: the other followers learn of it no sooner than this one.
        fence = self.cache.fence(key)
        leader_first = not self.follower.caught_up() or fence > self.follower.state.applied_index
        try:
            body, index = self._catalog_get(f"{path}?min_index={fence}", prefer_leader=leader_first)
        except ApiError as exc:
            if exc.status != 404 or leader_first:
                raise
            # Books are never deleted: a replica that knows no book by this id may only not
            # have applied it yet (right after the cluster's start, or its addition through
            # another frontend). The leader has applied every write it acknowledged.
            body, index = self._catalog_get(f"{path}?min_index={fence}", prefer_leader=True)
        if consistency == "cached":
            self.cache.fill(key, body, index)
        return body

    def _own_read(self, key: tuple, view) -> dict | None:
        """`view` of the follower's state, cached, if the follower may answer for `key`."""
        if not self.follower.caught_up():
            return None
        body, index = self.follower.state.read(view)
        if body is None or index < self.cache.fence(key):
            return None
        self.cache.fill(key, body, index)
        return body

    def _catalog_get(self, path: str, attempt_timeout: float | None = None,
                     prefer_leader: bool = False) -> tuple[dict, int]:
        self._follow_catalog_members()
        return _answer(self.catalog.read, path, attempt_timeout=attempt_timeout, prefer_leader=prefer_leader)

    def _catalog_write(self, method: str, path: str, payload: dict):
        self._follow_catalog_members()
        return _answer(self.catalog.write, method, path, payload)

    def replica_urls(self, group: str) -> list[str]:
        """Where this frontend calls `group` now (its /readyz and /cluster ask there too): its
        clients follow the membership the log records, the catalog's from this frontend's own
        follower, traffic or not (a frontend whose /readyz fails gets none)."""
        self._follow_catalog_members()
        return list({"catalog": self.catalog, "order": self.orders}[group].urls)

    def _follow_catalog_members(self) -> None:
        """Call the catalog members this frontend's follower has applied from the log (it
        may not have heard from a replica since a change, and its file's may all be gone)."""
        directory = self.follower.member.directory
        if directory.changed_index > self.catalog.members_index:
            view = directory.view()
            self.catalog.adopt_members(view["changed_index"], [m["http"] for m in view["members"]])

    def _checked(self, call, *args, **kwargs) -> dict:
        return _answer(call, *args, **kwargs)[0]


def purchase_answer(order: dict) -> dict:
    """The client's view of an order: 200 when completed, else the matching error."""
    status = order.get("status")
    if status == "completed":
        return {"order_id": order["order_id"], "id": order["id"], "title": order["title"],
                "price": order["price"]}
    if status == "failed":
        if order.get("error") == "not_found":
            raise ApiError(404, f"no book with id {order['id']}")
        if order.get("error") == "conflict":
            raise ApiError(422, "this Idempotency-Key was already used to buy another book")
        raise ApiError(409, f"book {order['id']} is out of stock")
    raise unavailable("the purchase is recorded but not yet decided; retry with the same "
                      "Idempotency-Key to learn its outcome")


def _answer(call, *args, **kwargs) -> tuple[dict, int]:
    """Make one group-client call: (JSON body, the log index it reflects), or an ApiError."""
    try:
        response = call(*args, **kwargs)
    except Unavailable:
        raise unavailable("no replica of the group is reachable") from None
    except Refused:
        raise _refused() from None
    return _json_or_error(response), int(response.headers.get(INDEX_HEADER, 0))


def _refused() -> ApiError:
    return ApiError(502, "a replica refused this frontend's signed request (does every process "
                         "hold the same cluster secret?)")


def _json_or_error(response: Reply) -> dict:
    try:
        body = response.json()
    except ValueError:
        raise ApiError(502, "a replica sent an unreadable answer") from None
    if response.status_code >= 400:
        headers = ({RETRY_AFTER_HEADER: response.headers[RETRY_AFTER_HEADER]}
                   if RETRY_AFTER_HEADER in response.headers else {})
        raise ApiError(response.status_code, body.get("error", "error"), headers)
    return body
