"""Who may do what over HTTP: the admin's bearer token, checked in constant time, and the
Host names a frontend answers (against DNS rebinding)."""
from __future__ import annotations

import hmac
from typing import AbstractSet

from bazar.web.errors import ApiError


def is_admin(authorization: str | None, token: str | None) -> bool:
    """True if `authorization` is `Bearer <token>`. With no token configured, never: a store
    started with none has no admin (on loopback one is always made, see
    ClusterConfig.admin_token_for_this_process), so no address makes everyone the admin.

    `hmac.compare_digest` takes the same time however much of a wrong token matches.
    """
    if token is None:
        return False
    return hmac.compare_digest((authorization or "").encode(), f"Bearer {token}".encode())


def require_bearer(authorization: str | None, token: str | None) -> None:
    """Raise 401 (403 on a store with no token) unless `is_admin`. Checked before a
    request's body is read, so an unauthenticated client costs a header comparison, never
    a parse."""
    if is_admin(authorization, token):
        return
    if token is None:
        raise ApiError(403, "admin operations are disabled: this store is reachable off loopback "
                            "and no admin token is configured (set BAZAR_ADMIN_TOKEN or BAZAR_ADMIN_TOKEN_FILE)")
    raise ApiError(401, "admin token required (Authorization: Bearer ...)",
                   {"WWW-Authenticate": "Bearer"})


def require_allowed_host(host: str | None, allowed: AbstractSet[str]) -> None:
    """Raise 421 (JSON) unless the request's Host header names this store: `allowed` holds
    `host:port` values and bare hosts (any port), in lower case, or "*" for any.

    A page on another site that makes its own name resolve to this machine (DNS rebinding)
    reaches the frontend with that name as its Host, so it is refused here before any route
    runs, and reads nothing. A request with no Host header at all is answered: no browser
    sends one (HTTP/1.1 requires it), so it comes from a program that could reach the port
    anyway."""
    if host is None or "*" in allowed:
        return
    host = host.strip().lower()
    bare = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if host in allowed or bare in allowed:
        return
    raise ApiError(421, "this store does not answer to that Host name; an operator adds it to "
                        "frontend.allowed_hosts in the cluster file")
