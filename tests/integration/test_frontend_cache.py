"""The frontend cache on a real cluster: never stale for its own writes, fresh across
frontends, flushed when its follower loses the leader, and honest about its counts.

The first and third tests share the module's 3+3+1 cluster (shared_cluster), each on
books of its own and counting from what the cache had counted before it; the other two
need a cluster shaped for them (two frontends; one replica per group and an empty cache).
"""
from __future__ import annotations

import threading
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.probes import set_stock


def cache_stats(cluster, url: str) -> dict:
    """The frontend at `url`'s cache counters, from its /cluster (the admin's view: the
    public one has no counter)."""
    return requests.get(f"{url}/cluster", headers=cluster.admin_headers, timeout=5).json()["cache"]


def test_a_thousand_purchase_then_info_pairs_never_read_stale(shared_cluster):
    """1,000 purchases, each followed by two reads of the same book through the same frontend,
    by four clients at once, each on a book of its own (so each knows the stock it must see,
    while the others' purchases invalidate entries and commit in the same rounds)."""
    cluster = shared_cluster
    url = cluster.frontend_url
    books = (1, 5, 6, 7)
    for book in books:
        set_stock(cluster, book, 5000)
    hits_before = cache_stats(cluster, url)["hits"]
    stale, failed = [], []

    def client(book: int) -> None:
        session = requests.Session()
        expected = 5000
        for i in range(250):
            response = session.post(f"{url}/purchase/{book}")
            if response.status_code != 200:
                failed.append((book, i, response.status_code))
                return
            expected -= 1
            for _ in range(2):  # the first read refills the invalidated entry, the second can hit it
                seen = session.get(f"{url}/info/{book}").json()["stock"]
                if seen != expected:
                    stale.append((book, i, seen, expected))

    threads = [threading.Thread(target=client, args=(book,)) for book in books]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failed == []
    assert stale == []
    assert cache_stats(cluster, url)["hits"] - hits_before > 500  # the cache was really in play, not bypassed throughout


def book_reads_at_catalog_replicas(cluster) -> float:
    """GET /books/<id> requests the catalog replicas have served, summed (their /metrics)."""
    total = 0.0
    for node in cluster.config.catalog:
        text = requests.get(f"{node.http.url}/metrics", timeout=5).text
        total += sum(sample.value for family in text_string_to_metric_families(text)
                     for sample in family.samples
                     if sample.name == "bazar_http_requests_total" and sample.labels.get("method") == "GET"
                     and sample.labels.get("route") == "/books/<raw_id>")
    return total


def test_a_read_right_after_a_purchase_sees_it_and_later_misses_are_answered_by_the_follower(shared_cluster):
    """The buyer's answer does not wait for the frontend's follower: it fences the book at
    the purchase's index, so a read at once sees the purchase (asked of the catalog leader
    while the follower has not applied it). The follower learns the commit with the
    leader's next heartbeat at the latest; from then on the miss that follows a purchase is
    answered by the follower itself, which holds the whole catalog, and asks no replica."""
    cluster = shared_cluster
    url = cluster.frontend_url
    session = requests.Session()
    set_stock(cluster, 4, 100)
    for i in range(10):
        assert session.post(f"{url}/purchase/4").status_code == 200
        assert session.get(f"{url}/info/4").json()["stock"] == 99 - i
    period = cluster.config.raft.append_entries_period
    asked, before = book_reads_at_catalog_replicas(cluster), cache_stats(cluster, url)
    for i in range(10):
        assert session.post(f"{url}/purchase/4").status_code == 200
        time.sleep(4 * period)           # a heartbeat or two: the follower has applied it
        assert session.get(f"{url}/info/4").json()["stock"] == 89 - i
    assert cache_stats(cluster, url)["misses"] - before["misses"] == 10
    assert book_reads_at_catalog_replicas(cluster) == asked


def test_an_update_through_one_frontend_reaches_another_within_the_bound(make_cluster):
    cluster = make_cluster(frontends=2)
    a, b = (f.http.url for f in cluster.config.frontends)
    assert requests.get(f"{b}/info/2").json()["price"] == 30.0  # B now caches the old price
    assert requests.get(f"{b}/info/2").json()["price"] == 30.0
    assert cache_stats(cluster, b)["hits"] >= 1
    assert requests.put(f"{a}/books/2", json={"price": 31.5}, headers=cluster.admin_headers).status_code == 200
    bound = cluster.config.cache.max_follower_lag
    deadline = time.monotonic() + bound + 1.0
    price = None
    while time.monotonic() < deadline:
        price = requests.get(f"{b}/info/2").json()["price"]
        if price == 31.5:
            break
        time.sleep(0.02)
    assert price == 31.5
    assert requests.get(f"{a}/info/2").json()["price"] == 31.5  # the writer sees it at once


@pytest.mark.parametrize("use", [
    pytest.param(lambda url, book: requests.post(f"{url}/purchase/{book}", timeout=10), id="bought"),
    pytest.param(lambda url, book: requests.get(f"{url}/info/{book}", timeout=10), id="read"),
])
def test_a_book_added_through_one_frontend_is_never_called_unknown_by_another(make_cluster, use):
    # A read may be stale within the follower-lag bound, but books are never deleted: a 404
    # from a catalog replica that has not applied the book yet is a wrong answer, not a
    # stale one, to a purchase and to a read alike (it is also how a read right after the
    # cluster's start said "no book with id 1").
    cluster = make_cluster(frontends=2)
    a, b = (f.http.url for f in cluster.config.frontends)
    for n in range(20):
        added = requests.post(f"{a}/books", json={"title": f"New {n}", "topic": "new", "price": 5, "stock": 3},
                              headers=cluster.admin_headers, timeout=10)
        assert added.status_code == 201, added.text
        answer = use(b, added.json()["id"])
        assert answer.status_code == 200, (n, answer.status_code, answer.text)
        assert answer.json()["title"] == f"New {n}"


def test_a_paused_catalog_leader_flushes_the_cache_and_reads_carry_on(shared_cluster):
    cluster = shared_cluster
    url = cluster.frontend_url
    for book_id in range(1, 8):
        requests.get(f"{url}/info/{book_id}")
    flushes_before = cache_stats(cluster, url)["flushes"]
    leader = cluster.leader("catalog")
    cluster.pause(leader)
    try:
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            for book_id in range(1, 8):
                response = requests.get(f"{url}/info/{book_id}", timeout=5)
                assert response.status_code == 200 and response.json()["id"] == book_id
        assert cache_stats(cluster, url)["flushes"] > flushes_before
        # Writes go on under the new leader and are read back correctly.
        restocked = requests.put(f"{url}/books/3", json={"stock": 77}, timeout=10,
                                 headers=cluster.admin_headers)
        assert restocked.status_code == 200
        assert requests.get(f"{url}/info/3").json()["stock"] == 77
    finally:
        cluster.resume(leader)
    assert requests.get(f"{url}/info/3?consistency=strong").json()["stock"] == 77


def test_hit_and_miss_counts_match_the_requests_made(make_cluster):
    cluster = make_cluster(catalog=1, order=1)
    url = cluster.frontend_url
    before = cache_stats(cluster, url)
    for book_id in range(1, 8):
        requests.get(f"{url}/info/{book_id}")            # 7 misses
    for _ in range(3):
        for book_id in range(1, 8):
            requests.get(f"{url}/info/{book_id}")        # 21 hits
    requests.get(f"{url}/search/distributed%20systems")  # 1 miss
    requests.get(f"{url}/search/Distributed%20Systems")  # 1 hit: same key, any case
    requests.get(f"{url}/info/1?consistency=local")      # bypasses the cache: counts nothing
    requests.get(f"{url}/info/1?consistency=strong")
    after = cache_stats(cluster, url)
    assert after["misses"] - before["misses"] == 8
    assert after["hits"] - before["hits"] == 22
    assert after["size"] == 8


def test_the_storefront_home_page_read_again_asks_no_replica_and_shows_a_new_topic_at_once(make_cluster):
    """The home page lists every book with its price and stock from the API's own cached,
    fenced reads: the topics, each topic's search and each book (1 + 2 + 7 keys). Read again
    with nothing changed, every one is a hit; a book added through this frontend fences the
    topics key at its index, so the next page shows its new topic."""
    cluster = make_cluster(catalog=1, order=1)
    url = cluster.frontend_url
    html = {"Accept": "text/html"}
    before = cache_stats(cluster, url)
    assert requests.get(f"{url}/", headers=html, timeout=10).status_code == 200
    first = cache_stats(cluster, url)
    assert first["misses"] - before["misses"] == 10
    assert requests.get(f"{url}/", headers=html, timeout=10).status_code == 200
    second = cache_stats(cluster, url)
    assert (second["misses"] - first["misses"], second["hits"] - first["hits"]) == (0, 10)

    added = requests.post(f"{url}/books", json={"title": "Paxos Made Simpler", "topic": "consensus",
                                                "price": 9, "stock": 3}, timeout=10,
                          headers=cluster.admin_headers)
    assert added.status_code == 201, added.text
    page = requests.get(f"{url}/", headers=html, timeout=10).text
    assert 'data-topic="consensus"' in page and "Paxos Made Simpler" in page
