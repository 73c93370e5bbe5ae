"""`frontend.pages.wants_html` answers the headers API clients send without parsing them; the
answer must be the one the full parse gives, for any Accept header."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from bazar.frontend.pages import wants_html

TYPES = ["text/html", "TEXT/HTML", "application/json", "*/*", "text/*", "text / *", "application/*",
         "application/xhtml+xml", "image/png", "text/plain", "application/xml", "html", "x/y"]


def full_parse(request: Request) -> bool:
    return request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"


entry = st.tuples(st.sampled_from(TYPES), st.sampled_from(["", ";q=0", ";q=0.1", ";q=0.5", ";q=0.9", ";q=1",
                                                           ";level=1", " ; q=0.3"]))


@settings(max_examples=150, deadline=None)
@given(st.lists(entry, max_size=5), st.sampled_from([", ", ",", " , "]))
def test_the_shortcut_agrees_with_the_full_parse(entries, separator):
    accept = separator.join(t + p for t, p in entries)
    request = Request(EnvironBuilder(headers={"Accept": accept} if accept else {}).get_environ())
    assert wants_html(request) is full_parse(request), accept


def test_a_browser_gets_html_and_an_api_client_json():
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    for accept, html in (("*/*", False), ("application/json", False), (browser, True), ("text/*", True),
                         ("application/json;q=0, */*", True)):
        assert wants_html(Request(EnvironBuilder(headers={"Accept": accept}).get_environ())) is html, accept
