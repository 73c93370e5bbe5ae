"""JSON errors for every Flask app in Bazar: no HTML error pages, no stack traces."""
from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from node.commands import BadRequest

log = logging.getLogger("bazar.http")

MAX_BODY_BYTES = 64 * 1024


class ApiError(Exception):
    """An error answered as JSON `{"error": message}` with `status` (and extra headers)."""

    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


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
        messages = {404: "no such resource", 405: "method not allowed",
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
    """The request's JSON body; ApiError 400 if it is absent or malformed."""
    body = request.get_json(silent=True, force=True)
    if body is None:
        raise ApiError(400, "body must be valid JSON")
    return body


def json_object(request) -> dict:
    """The request's JSON body, which must be an object; ApiError 400 otherwise."""
    body = json_body(request)
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object")
    return body
