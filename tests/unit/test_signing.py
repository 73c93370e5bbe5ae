"""Signed requests between Bazar's processes (web/signing.py): what passes, what is refused."""
from __future__ import annotations

import pytest
import requests
import urllib3

from bazar.web.signing import (WINDOW_SECONDS, PeerAuth, Refused, Signer, Verifier, sign, signed_target,
                                signing_key)

SECRET = "a cluster secret"
NOW = 1_800_000_000.0


REPLICA = "127.0.0.1:7201"


def _verifier() -> Verifier:
    return Verifier(signing_key(SECRET), REPLICA)


def _signed(method="POST", target="/purchase", body=b'{"id": 1}', headers=None, now=NOW, secret=SECRET):
    return sign(signing_key(secret), method, REPLICA, target, body, headers, now=now)


def test_a_signed_request_passes_once():
    verifier = _verifier()
    headers = _signed()
    verifier.verify("POST", "/purchase", headers, b'{"id": 1}', now=NOW + 1)
    with pytest.raises(Refused, match="replay"):
        verifier.verify("POST", "/purchase", headers, b'{"id": 1}', now=NOW + 2)


@pytest.mark.parametrize("method, target, body, extra", [
    ("PUT", "/purchase", b'{"id": 1}', {}),                      # another method
    ("POST", "/purchase?x=1", b'{"id": 1}', {}),                 # another target
    ("POST", "/purchase", b'{"id": 2}', {}),                     # another body
    ("POST", "/purchase", b'{"id": 1}', {"Idempotency-Key": "k"}),  # a key added on the way
])
def test_anything_changed_on_the_way_is_refused(method, target, body, extra):
    headers = {**_signed(), **extra}
    with pytest.raises(Refused, match="signature is wrong"):
        _verifier().verify(method, target, headers, body, now=NOW)


def test_another_secret_or_no_signature_is_refused():
    with pytest.raises(Refused, match="signature is wrong"):
        _verifier().verify("POST", "/purchase", _signed(secret="another"), b'{"id": 1}', now=NOW)
    with pytest.raises(Refused, match="not signed"):
        _verifier().verify("POST", "/purchase", {}, b'{"id": 1}', now=NOW)


@pytest.mark.parametrize("offset", [-31, 31, 3600])
def test_a_request_signed_outside_the_window_is_refused(offset):
    with pytest.raises(Refused, match="clock"):
        _verifier().verify("POST", "/purchase", _signed(now=NOW), b'{"id": 1}', now=NOW + offset)


def test_neither_the_secret_nor_the_key_is_in_what_is_sent():
    headers = _signed()
    sent = "".join(f"{k}:{v}" for k, v in headers.items())
    assert SECRET not in sent
    assert signing_key(SECRET).hex() not in sent
    assert signing_key(SECRET) != SECRET.encode()


def test_the_signed_target_is_the_decoded_path_with_the_raw_query():
    assert signed_target("http://h:1/orders/a%20b?consistency=strong&x=%20") == \
        "/orders/a b?consistency=strong&x=%20"
    assert signed_target("/books") == "/books"


def test_a_cluster_without_a_secret_signs_nothing():
    assert Signer(None).headers("GET", "http://h/status") == {}


def test_a_url_without_its_replica_cannot_be_signed():
    with pytest.raises(ValueError, match="host and port"):
        Signer(SECRET).headers("GET", "/status")


def test_requests_signed_by_peer_auth_verify_as_the_server_sees_them():
    prepared = requests.Request("PUT", f"http://{REPLICA}/books/3?x=1", json={"stock": 2},
                                headers={"Idempotency-Key": "k1"}, auth=PeerAuth(SECRET)).prepare()
    _verifier().verify("PUT", "/books/3?x=1", prepared.headers, prepared.body)


def test_nonces_are_forgotten_once_their_date_has_left_the_window():
    """A replica remembers about a window's worth of nonces, not every request it ever took:
    a nonce whose date is out of the window can only come back refused for its date."""
    verifier = _verifier()
    for _ in range(1000):
        verifier.verify("POST", "/purchase", _signed(now=NOW), b'{"id": 1}', now=NOW)
    assert verifier.remembered == 1000
    later = NOW + 2 * WINDOW_SECONDS
    verifier.verify("POST", "/purchase", _signed(now=later), b'{"id": 1}', now=later)
    assert verifier.remembered == 1


def test_a_replay_is_refused_for_as_long_as_its_date_is_in_the_window():
    verifier = _verifier()
    first = _signed(now=NOW)
    verifier.verify("POST", "/purchase", first, b'{"id": 1}', now=NOW)
    for offset in (10, 20, WINDOW_SECONDS):   # newer requests arrive, older nonces go
        verifier.verify("POST", "/purchase", _signed(now=NOW + offset), b'{"id": 1}', now=NOW + offset)
        with pytest.raises(Refused, match="replay"):
            verifier.verify("POST", "/purchase", first, b'{"id": 1}', now=NOW + offset)
    with pytest.raises(Refused, match="clock"):
        verifier.verify("POST", "/purchase", first, b'{"id": 1}', now=NOW + WINDOW_SECONDS + 1)


def test_a_request_signed_for_one_replica_is_refused_by_its_sibling():
    """The destination (host:port, as the sender names the replica) is signed: a request
    recorded on its way to one replica is no good at another, whose nonces are its own."""
    signer = Signer(SECRET)
    headers = signer.headers("POST", "http://127.0.0.1:7201/purchase", b'{"id": 1}')
    with pytest.raises(Refused, match="signature is wrong"):
        Verifier(signing_key(SECRET), "127.0.0.1:7202").verify("POST", "/purchase", headers, b'{"id": 1}')
    Verifier(signing_key(SECRET), "127.0.0.1:7201").verify("POST", "/purchase", headers, b'{"id": 1}')


def test_the_destination_is_compared_without_regard_to_case():
    headers = Signer(SECRET).headers("GET", "http://Catalog1:8101/status")
    Verifier(signing_key(SECRET), "catalog1:8101").verify("GET", "/status", headers, b"")


@pytest.mark.parametrize("path", ["/search/..", "/search/.", "/orders/a/../b", "/x/./y"])
def test_what_is_signed_is_the_path_urllib3_sends(path):
    """urllib3 removes `.` and `..` segments before sending: the signature covers what it
    sends (so a replica never refuses it), not the path as written."""
    sent = urllib3.util.parse_url("http://h:1" + path).path
    assert signed_target("http://h:1" + path) == sent
