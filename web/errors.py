"""JSON errors for every Flask app in Bazar: no HTML error pages, no stack traces."""
from __future__ import annotations

import json
import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from bazar.web.protocol import retry_after

log = logging.getLogger("bazar.http")

MAX_BODY_BYTES = 64 * 1024
# Bazar's bodies are flat objects of a few fields; anything deeper is not ours, and
# Python's parser would otherwise recurse until RecursionError (a 500) on a 30,000-deep body.
MAX_JSON_DEPTH = 16
# The largest number any command takes is a book id or a stock (at most 10 digits) or a price;
# a 5,000-digit literal is refused before Python spends time converting it.
MAX_NUMBER_CHARS = 24


class BadRequest(ValueError):
    """Client input that can never succeed; answered 400 with this message."""


class ApiError(Exception):
    """An error answered as JSON `{"error": message}` with `status` (and extra headers)."""

    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def unavailable(message: str) -> ApiError:
    """A 503 that a retry can cure, with Retry-After (see web/protocol.py)."""
    return ApiError(503, message, retry_after())


def error_response(status: int, message: str, headers: dict | None = None):
    response = jsonify(error=message)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def install(app: Flask) -> None:
    """Make `app` answer every error as JSON and refuse bodies over 64 KiB."""
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.message, exc.headers)

    @app.errorhandler(BadRequest)
    def _bad_request(exc: BadRequest):
        return error_response(400, str(exc))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        messages = {404: "no such resource", 405: "method not allowed", 415: "unsupported body type",
                    413: f"request body over {MAX_BODY_BYTES} bytes", 400: "malformed request"}
        response = error_response(exc.code or 500, messages.get(exc.code, exc.name.lower()))
        if exc.code == 405 and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal error")


def json_body(request) -> object:
    """The request's JSON body, parsed strictly; ApiError otherwise, and nothing is changed.

    - 415 unless the body is declared JSON (`Content-Type: application/json`): a
      cross-site HTML form can only send form or text bodies, so it can never
      reach a JSON write;
    - 400 if it is absent, malformed, not UTF-8, nested deeper than MAX_JSON_DEPTH,
      or holds a number literal longer than MAX_NUMBER_CHARS, NaN or Infinity.
    """
    if not request.is_json:
        raise ApiError(415, "body must be JSON, sent with Content-Type: application/json")
    raw = request.get_data(cache=True)
    if _nesting_depth(raw) > MAX_JSON_DEPTH:
        raise ApiError(400, f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(raw, parse_int=_bounded(int), parse_float=_bounded(float),
                          parse_constant=_refuse_constant)
    except _NumberRefused as exc:
        raise ApiError(400, str(exc)) from None
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "body must be valid JSON") from None


class _NumberRefused(ValueError):
    pass


def _bounded(convert):
    def parse(literal: str):
        if len(literal) > MAX_NUMBER_CHARS:
            raise _NumberRefused(f"a number in the body is longer than {MAX_NUMBER_CHARS} characters")
        return convert(literal)
    return parse


def _refuse_constant(name: str):
    raise _NumberRefused(f"{name} is not a number Bazar accepts")


def _nesting_depth(raw: bytes) -> int:
    """The deepest bracket nesting in a JSON text, brackets inside strings ignored.

    Counted on the raw bytes before parsing, so a hostile body costs one linear pass.
    """
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:      # backslash
                escaped = True
            elif byte == 0x22:      # closing quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_JSON_DEPTH:
                    return deepest
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def json_object(request) -> dict:
    """The request's JSON body, which must be an object; ApiError 400 otherwise."""
    body = json_body(request)
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object")
    return body
