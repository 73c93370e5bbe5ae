"""Signed answers (web/signing.py): a replica signs its answer to each request it verified,
and the sender believes an answer only if the signature covers exactly what arrived, for
this request, from the replica it called."""
from __future__ import annotations

import threading

import pytest
import requests

from bazar.web.protocol import (ANSWER_SIGNATURE_HEADER, ANSWERED_HEADERS, INDEX_HEADER, LEADER_HEADER,
                                MEMBERS_HEADER, NONCE_HEADER)
from bazar.web.signing import PeerAuth, Signer, UnsignedAnswer, Verifier, answer_key, sign_answer, signing_key

SECRET = "a cluster secret for answers"
REPLICA = "127.0.0.1:7201"
URL = f"http://{REPLICA}/books/1"
BODY = b'{"id": 1, "price": 24.5}'
HEADERS = {LEADER_HEADER: "http://127.0.0.1:7203", MEMBERS_HEADER: "4", INDEX_HEADER: "17",
           "Retry-After": "", "Content-Type": "application/json"}


def _replica(address: str = REPLICA, secret: str = SECRET) -> Verifier:
    return Verifier(signing_key(secret), address, answer_key=answer_key(secret))


def _exchange(status: int = 200, headers: dict | None = None, body: bytes = BODY, address: str = REPLICA):
    """A signed request to `URL`, verified and answered (signed) by the replica at `address`
    as it sees itself: (the request's signature headers, the answer's headers)."""
    sent = Signer(SECRET).headers("GET", URL)
    replica = _replica(address)
    if address == REPLICA:
        replica.verify("GET", "/books/1", sent, b"")
    answered = dict(HEADERS if headers is None else headers)
    answered[ANSWER_SIGNATURE_HEADER] = replica.sign_answer(sent[NONCE_HEADER], status, answered, body)
    return sent, answered


def test_an_answer_as_signed_is_genuine():
    sent, answered = _exchange()
    assert Signer(SECRET).genuine(URL, sent, 200, answered, BODY)


def test_a_changed_status_is_refused():
    sent, answered = _exchange(status=409)
    assert not Signer(SECRET).genuine(URL, sent, 200, answered, BODY)


@pytest.mark.parametrize("name", ANSWERED_HEADERS)
def test_a_changed_header_is_refused(name):
    sent, answered = _exchange()
    forged = {**answered, name: "http://127.0.0.1:6666" if name == LEADER_HEADER else "999"}
    assert not Signer(SECRET).genuine(URL, sent, 200, forged, BODY)


def test_a_leader_hint_added_to_an_answer_that_named_none_is_refused():
    plain = {k: v for k, v in HEADERS.items() if k != LEADER_HEADER}
    sent, answered = _exchange(headers=plain)
    assert Signer(SECRET).genuine(URL, sent, 200, answered, BODY)
    assert not Signer(SECRET).genuine(URL, sent, 200, {**answered, LEADER_HEADER: "http://evil:1"}, BODY)


def test_a_changed_body_is_refused():
    sent, answered = _exchange()
    assert not Signer(SECRET).genuine(URL, sent, 200, answered, BODY.replace(b"24.5", b"0.01"))


def test_an_old_answer_replayed_to_a_new_request_is_refused():
    """The nonce binds the answer to its request: the answer to an earlier identical
    request is no answer to this one."""
    _, old_answer = _exchange()
    new_request = Signer(SECRET).headers("GET", URL)
    assert not Signer(SECRET).genuine(URL, new_request, 200, old_answer, BODY)


def test_another_replicas_answer_is_refused():
    """A sibling's genuine answer, passed off as the answer of the replica called."""
    sent, answered = _exchange(address="127.0.0.1:7202")
    assert not Signer(SECRET).genuine(URL, sent, 200, answered, BODY)


def test_an_unsigned_answer_or_one_under_another_secret_is_refused():
    sent, answered = _exchange()
    unsigned = {k: v for k, v in answered.items() if k != ANSWER_SIGNATURE_HEADER}
    assert not Signer(SECRET).genuine(URL, sent, 200, unsigned, BODY)
    other = sign_answer(answer_key("another secret"), REPLICA, sent[NONCE_HEADER], 200, answered, BODY)
    assert not Signer(SECRET).genuine(URL, sent, 200, {**answered, ANSWER_SIGNATURE_HEADER: other}, BODY)


def test_a_request_signature_is_never_an_answer_signature():
    """Answers are signed under a key of their own: no request signature a man in the
    middle records can be turned into a signed answer."""
    assert answer_key(SECRET) != signing_key(SECRET)
    sent, answered = _exchange()
    under_request_key = sign_answer(signing_key(SECRET), REPLICA, sent[NONCE_HEADER], 200, answered, BODY)
    assert not Signer(SECRET).genuine(URL, sent, 200, {**answered, ANSWER_SIGNATURE_HEADER: under_request_key},
                                      BODY)


def test_a_signer_without_a_secret_checks_nothing():
    assert Signer(None).genuine(URL, {}, 200, {}, b"anything")


class _Replica:
    """One HTTP server answering every GET with `status` and BODY, signed under `signs_with`
    (None: unsigned), as a replica at its own address would."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.status, self.signs_with = 200, SECRET
        replica = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                answered = {"Content-Type": "application/json"}
                self.send_response(replica.status)
                self.send_header("Content-Type", "application/json")
                if replica.signs_with is not None:
                    self.send_header(ANSWER_SIGNATURE_HEADER, sign_answer(
                        answer_key(replica.signs_with), replica.address, self.headers.get(NONCE_HEADER, ""),
                        replica.status, answered, BODY))
                self.send_header("Content-Length", str(len(BODY)))
                self.end_headers()
                self.wfile.write(BODY)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()


@pytest.fixture
def replica():
    started = _Replica()
    yield started
    started.server.shutdown()
    started.server.server_close()


def test_peer_auth_raises_on_an_answer_its_replica_did_not_sign(replica):
    url = f"http://{replica.address}/books/1"
    assert requests.get(url, auth=PeerAuth(SECRET), timeout=5).content == BODY
    for forger in (None, "another secret"):
        replica.signs_with = forger
        with pytest.raises(UnsignedAnswer, match="forged or altered"):
            requests.get(url, auth=PeerAuth(SECRET), timeout=5)
    # A refusal cannot be signed (the replica may not share the key): returned as it is.
    replica.status, replica.signs_with = 403, None
    assert requests.get(url, auth=PeerAuth(SECRET), timeout=5).status_code == 403
