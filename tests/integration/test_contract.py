"""The public HTTP contract, end to end through a real frontend and real replicas."""
from __future__ import annotations

import threading

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.probes import recorded_orders, set_stock

SEVEN_BOOKS = {
    "How to get a good grade in DOS in 40 minutes a day", "RPCs for Noobs",
    "Xen and the Art of Surviving Undergraduate School", "Cooking for the Impatient Undergrad",
    "How to finish Project 3 on time", "Why theory classes are so hard", "Spring in the Pioneer Valley",
}


def test_the_seven_books_are_loaded_once(shared_cluster):
    url = shared_cluster.frontend_url
    titles = set()
    for book_id in range(1, 8):
        response = requests.get(f"{url}/info/{book_id}")
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"id", "title", "topic", "price", "stock"}
        assert body["id"] == book_id
        titles.add(body["title"])
    assert titles == SEVEN_BOOKS
    assert requests.get(f"{url}/info/8").status_code == 404


def test_search_is_case_insensitive_and_unknown_topic_is_empty(shared_cluster):
    url = shared_cluster.frontend_url
    body = requests.get(f"{url}/search/Distributed%20Systems").json()
    assert body["topic"] == "Distributed Systems"
    assert {item["title"] for item in body["items"]} == {
        "How to get a good grade in DOS in 40 minutes a day", "RPCs for Noobs"}
    assert all(set(item) == {"id", "title"} for item in body["items"])
    assert len(requests.get(f"{url}/search/undergraduate%20school").json()["items"]) == 5
    empty = requests.get(f"{url}/search/cookery")
    assert empty.status_code == 200 and empty.json() == {"topic": "cookery", "items": []}


def test_purchase_takes_one_copy_and_records_the_order(shared_cluster):
    url = shared_cluster.frontend_url
    before = requests.get(f"{url}/info/2?consistency=strong").json()["stock"]
    response = requests.post(f"{url}/purchase/2")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"order_id", "id", "title", "price"}
    assert body["id"] == 2 and body["title"] == "RPCs for Noobs"
    assert requests.get(f"{url}/info/2?consistency=strong").json()["stock"] == before - 1
    order = requests.get(f"{url}/orders/{body['order_id']}").json()
    assert order["status"] == "completed" and order["id"] == 2
    newest = requests.get(f"{url}/orders?limit=1", headers=shared_cluster.admin_headers).json()["orders"]
    assert newest[0]["order_id"] == body["order_id"]


def test_lab_aliases(shared_cluster):
    url = shared_cluster.frontend_url
    assert requests.get(f"{url}/lookup/3").json()["id"] == 3
    bought = requests.post(f"{url}/buy/3")
    assert bought.status_code == 200 and bought.json()["id"] == 3


def test_out_of_stock_is_409_and_records_no_completed_order(shared_cluster):
    url = shared_cluster.frontend_url
    assert requests.put(f"{url}/books/4", json={"stock": 1}, headers=shared_cluster.admin_headers).status_code == 200
    assert requests.post(f"{url}/purchase/4").status_code == 200
    refused = requests.post(f"{url}/purchase/4")
    assert refused.status_code == 409
    assert "stock" in refused.json()["error"]
    assert requests.get(f"{url}/info/4?consistency=strong").json()["stock"] == 0


def test_same_idempotency_key_gives_the_same_order_once(shared_cluster):
    url = shared_cluster.frontend_url
    before = requests.get(f"{url}/info/5?consistency=strong").json()["stock"]
    headers = {"Idempotency-Key": "contract-key-1"}
    first = requests.post(f"{url}/purchase/5", headers=headers)
    second = requests.post(f"{url}/purchase/5", headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert first.json()["order_id"] == "contract-key-1"
    assert requests.get(f"{url}/info/5?consistency=strong").json()["stock"] == before - 1
    reused = requests.post(f"{url}/purchase/6", headers=headers)
    assert reused.status_code == 422


def test_catalog_updates(shared_cluster):
    url = shared_cluster.frontend_url
    admin = shared_cluster.admin_headers
    updated = requests.put(f"{url}/books/6", json={"price": 9.5, "restock": 10}, headers=admin)
    assert updated.status_code == 200
    assert updated.json()["price"] == 9.5
    created = requests.post(f"{url}/books", json={"title": "Raft in Practice", "topic": "distributed systems",
                                                  "price": 40, "stock": 3}, headers=admin)
    assert created.status_code == 201
    new_id = created.json()["id"]
    assert requests.get(f"{url}/info/{new_id}?consistency=strong").json()["title"] == "Raft in Practice"
    titles = [i["title"] for i in requests.get(f"{url}/search/distributed%20systems?consistency=strong").json()["items"]]
    assert "Raft in Practice" in titles
    assert requests.put(f"{url}/books/999", json={"price": 1}, headers=admin).status_code == 404


def test_cluster_and_health_endpoints(shared_cluster):
    url = shared_cluster.frontend_url
    assert requests.get(f"{url}/healthz").status_code == 200
    assert requests.get(f"{url}/readyz").status_code == 200
    public = requests.get(f"{url}/cluster").json()["groups"]
    admin = requests.get(f"{url}/cluster", headers=shared_cluster.admin_headers).json()["groups"]
    for groups in (public, admin):
        for name in ("catalog", "order"):
            nodes = groups[name]["nodes"]
            assert len(nodes) == 3
            assert sum(1 for n in nodes if n["role"] == "leader") == 1
            assert groups[name]["leader"] in {n["id"] for n in nodes}
            for node in nodes:
                assert node["reachable"] is True
    for name in ("catalog", "order"):  # terms and indexes are the admin's
        for shown, full in zip(public[name]["nodes"], admin[name]["nodes"]):
            assert set(shown) == {"id", "group", "reachable", "role"}
            assert {"term", "commit_index", "applied_index"} <= set(full)


BAD_REQUESTS = [
    ("GET", "/info/abc", None, 400), ("GET", "/info/0", None, 400), ("GET", "/info/-3", None, 400),
    ("GET", "/info/1.5", None, 400), ("GET", "/info/99999999999999999999999", None, 400),
    ("POST", "/purchase/0", None, 400), ("POST", "/purchase/abc", None, 400),
    ("POST", "/purchase/424242", None, 404),
    ("GET", "/no/such/route", None, 404), ("DELETE", "/info/1", None, 405),
    ("GET", "/purchase/1", None, 405), ("GET", "/orders?limit=0", None, 400),
    ("GET", "/orders?limit=abc", None, 400), ("GET", "/orders/nope", None, 404),
    ("GET", "/info/1?consistency=bogus", None, 400),
    ("PUT", "/books/1", "not json", 400), ("PUT", "/books/1", {"price": -1}, 400),
    ("PUT", "/books/1", {"price": "3"}, 400), ("PUT", "/books/1", {"stock": 1.5}, 400),
    ("PUT", "/books/1", {"restock": 0}, 400), ("PUT", "/books/1", {"stock": True}, 400),
    ("PUT", "/books/1", {}, 400), ("PUT", "/books/1", {"colour": "red"}, 400),
    ("PUT", "/books/1", [1, 2], 400), ("PUT", "/books/abc", {"price": 1}, 400),
    ("POST", "/books", {"title": "x"}, 400), ("POST", "/books", {"title": "", "topic": "t", "price": 1, "stock": 1}, 400),
    ("PUT", "/books/1", {"price": 1, "pad": "x" * 100_000}, 413),
]


def test_bad_input_is_a_json_error_and_changes_nothing(shared_cluster):
    url = shared_cluster.frontend_url
    before = requests.get(f"{url}/info/1?consistency=strong").json()
    admin = shared_cluster.admin_headers  # the admin routes' bad input is checked past the token
    orders_before = recorded_orders(shared_cluster)  # the earlier tests' purchases, recorded
    for method, path, body, status in BAD_REQUESTS:
        # Raw strings are sent declared as JSON: what is tested is the parse, not the type
        # (an undeclared body is 415, see test_hostile_input.py).
        kwargs = ({"data": body, "headers": {"Content-Type": "application/json", **admin}}
                  if isinstance(body, str) else {"json": body, "headers": admin})
        response = requests.request(method, url + path, **kwargs)
        assert response.status_code == status, (method, path, body, response.text)
        assert response.headers["Content-Type"].startswith("application/json"), (method, path)
        assert isinstance(response.json()["error"], str), (method, path)
        assert "Traceback" not in response.text
    assert requests.get(f"{url}/info/1?consistency=strong").json() == before
    assert requests.get(f"{url}/orders?limit=1000", headers=admin).json()["orders"] == orders_before
    bad_key = requests.post(f"{url}/purchase/1", headers={"Idempotency-Key": "has spaces"})
    assert bad_key.status_code == 400


def test_admin_token_guards_catalog_updates(make_cluster):
    cluster = make_cluster(catalog=1, order=1, env={"BAZAR_ADMIN_TOKEN": "s3cret"})
    url = cluster.frontend_url
    refused = requests.put(f"{url}/books/1", json={"price": 1})
    assert refused.status_code == 401 and "error" in refused.json()
    wrong = requests.put(f"{url}/books/1", json={"price": 1}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    created = requests.post(f"{url}/books", json={"title": "t", "topic": "x", "price": 1, "stock": 1})
    assert created.status_code == 401
    assert requests.get(f"{url}/info/1").json()["price"] == 25.0
    allowed = requests.put(f"{url}/books/1", json={"price": 1}, headers={"Authorization": "Bearer s3cret"})
    assert allowed.status_code == 200 and allowed.json()["price"] == 1


def test_admin_writes_with_the_same_idempotency_key_apply_once(shared_cluster):
    url = shared_cluster.frontend_url
    before = requests.get(f"{url}/info/7?consistency=strong").json()["stock"]
    headers = {"Idempotency-Key": "restock-once", **shared_cluster.admin_headers}
    first = requests.put(f"{url}/books/7", json={"restock": 5}, headers=headers)
    again = requests.put(f"{url}/books/7", json={"restock": 5}, headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.json()["stock"] == again.json()["stock"] == before + 5
    assert requests.get(f"{url}/info/7?consistency=strong").json()["stock"] == before + 5


def test_a_replica_lists_topics_only_once_it_has_applied_the_index_asked_for(shared_cluster):
    """The frontend asks for /topics at its follower's applied index: a replica that has not
    applied that far must refuse (503), never list the topics of an older state. Without
    this, a replica one entry behind listed no topics at all right after the seed (the home
    page showed none)."""
    replica = shared_cluster.config.catalog[0].http.url
    assert requests.get(f"{replica}/topics?min_index=0", timeout=10, auth=shared_cluster.peer_auth).status_code == 200
    refused = requests.get(f"{replica}/topics?min_index={10 ** 12}", timeout=10,
                           auth=shared_cluster.peer_auth)
    assert refused.status_code == 503 and "Retry-After" in refused.headers


def test_a_catalog_leader_takes_a_batch_of_purchases_exactly_once_each(shared_cluster):
    """POST /purchases, the order leader's batch (node/orders/purchase.py, web/batching.py): each
    item answered as POST /purchase would answer it, in order; bad input anywhere in the
    batch is a 400 that takes nothing; asked again, every item gets its first outcome."""
    cluster = shared_cluster
    leader = cluster.config.node(cluster.leader("catalog")).http.url
    auth = cluster.peer_auth
    set_stock(cluster, 6, 3)

    def stock() -> int:
        return requests.get(f"{cluster.frontend_url}/info/6?consistency=strong").json()["stock"]

    for bad in ({}, {"purchases": []}, {"purchases": "x"}, {"purchases": [{"id": 6}]},
                {"purchases": [{"id": 6, "order_id": "batch-ok"}, {"id": "six", "order_id": "batch-bad"}]},
                {"purchases": [{"id": 6, "order_id": f"batch-{i}"} for i in range(65)]}):
        response = requests.post(f"{leader}/purchases", json=bad, auth=auth, timeout=10)
        assert response.status_code == 400 and "error" in response.json(), (bad, response.text)
    assert stock() == 3
    requests.post(f"{leader}/purchase", json={"id": 5, "order_id": "batch-other-book"}, auth=auth, timeout=10)
    batch = {"purchases": [{"id": 6, "order_id": f"batch-{i}"} for i in range(5)]
             + [{"id": 6, "order_id": "batch-other-book"}]}
    first = requests.post(f"{leader}/purchases", json=batch, auth=auth, timeout=10)
    assert first.status_code == 200, first.text
    answers = first.json()["answers"]
    assert [a["status"] for a in answers] == [200] * 5 + [422]
    assert [a["outcome"]["ok"] for a in answers[:5]] == [True, True, True, False, False]
    assert stock() == 0
    again = requests.post(f"{leader}/purchases", json=batch, auth=auth, timeout=10)
    assert again.json()["answers"] == answers and stock() == 0
    for i in range(3):
        remembered = requests.get(f"{leader}/purchases/batch-{i}", auth=auth, timeout=10)
        assert remembered.status_code == 200 and remembered.json()["ok"] is True


def test_an_order_leader_takes_a_batch_of_purchases_exactly_once_each(shared_cluster):
    """POST /purchases on the order group, a frontend's batch (web/batching.py): bad input
    anywhere is a 400 that records nothing; each item is answered as POST /purchase would
    answer it, in order; asked again, every item gets its first outcome."""
    cluster = shared_cluster
    leader = cluster.config.node(cluster.leader("order")).http.url
    auth = cluster.peer_auth
    set_stock(cluster, 3, 2)
    set_stock(cluster, 4, 5)
    for bad in ({}, {"purchases": []}, {"purchases": [7]},
                {"purchases": [{"id": 3, "order_id": "obatch-ok"}, {"id": 3, "order_id": "bad key!"}]},
                {"purchases": [{"id": 3, "order_id": f"obatch-{i}"} for i in range(65)]}):
        response = requests.post(f"{leader}/purchases", json=bad, auth=auth, timeout=10)
        assert response.status_code == 400 and "error" in response.json(), (bad, response.text)
    assert requests.get(f"{cluster.frontend_url}/orders/obatch-ok").status_code == 404
    assert requests.post(f"{cluster.frontend_url}/purchase/4", headers={"Idempotency-Key": "obatch-4"}).ok
    batch = {"purchases": [{"id": 3, "order_id": f"obatch-{i}"} for i in range(3)] + [{"id": 3, "order_id": "obatch-4"}]}
    first = requests.post(f"{leader}/purchases", json=batch, auth=auth, timeout=10)
    assert first.status_code == 200, first.text
    answers = first.json()["answers"]
    assert [a["status"] for a in answers] == [200, 200, 200, 422]
    assert [a["order"]["status"] for a in answers[:3]] == ["completed", "completed", "failed"]
    assert requests.get(f"{cluster.frontend_url}/info/3?consistency=strong").json()["stock"] == 0
    again = requests.post(f"{leader}/purchases", json=batch, auth=auth, timeout=10).json()["answers"]
    assert [a["status"] for a in again] == [200, 200, 200, 422]
    assert [a["order"]["status"] for a in again[:3]] == ["completed", "completed", "failed"]
    shown = requests.get(f"{cluster.frontend_url}/orders/obatch-1").json()
    assert shown["status"] == "completed" and shown["id"] == 3


def test_concurrent_purchases_through_the_frontend_go_in_batches_and_sell_exactly(shared_cluster):
    """16 buyers at once: the frontend sends the purchases that arrive while one is on its
    way together (the catalog replicas count POST /purchases calls), and the stock falls by
    exactly the purchases answered 200."""
    cluster = shared_cluster
    url = cluster.frontend_url

    def batches() -> float:
        total = 0.0
        for node in cluster.config.catalog:
            text = requests.get(f"{node.http.url}/metrics", timeout=5).text
            total += sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                         if s.name == "bazar_http_requests_total" and s.labels.get("route") == "/purchases"
                         and s.labels.get("status") == "200")
        return total

    set_stock(cluster, 2, 1000)
    before = batches()
    answered: list[int] = []

    def buyer() -> None:
        session = requests.Session()
        for _ in range(15):
            answered.append(session.post(f"{url}/purchase/2", timeout=15).status_code)

    threads = [threading.Thread(target=buyer) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answered.count(200) == len(answered) == 240
    assert requests.get(f"{url}/info/2?consistency=strong").json()["stock"] == 1000 - 240
    assert batches() > before
