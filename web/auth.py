"""Who may do what over HTTP: the admin's bearer token, checked in constant time."""
from __future__ import annotations

import hmac

from bazar.web.errors import ApiError


def is_admin(authorization: str | None, token: str | None, open_without_token: bool = True) -> bool:
    """True if `authorization` is `Bearer <token>`. With no token configured, True only
    for a store that may run open (`open_without_token`: a loopback development
    cluster, where everyone is the admin); a public one then has no admin at all.

    `hmac.compare_digest` takes the same time however much of a wrong token matches.
    """
    if token is None:
        return open_without_token
    return hmac.compare_digest((authorization or "").encode(), f"Bearer {token}".encode())


def require_bearer(authorization: str | None, token: str | None, open_without_token: bool = True) -> None:
    """Raise 401 (403 on a public store with no token) unless `is_admin`. Checked before a
    request's body is read, so an unauthenticated client costs a header comparison, never
    a parse."""
    if is_admin(authorization, token, open_without_token):
        return
    if token is None:
        raise ApiError(403, "admin operations are disabled: this store is reachable off loopback "
                            "and no admin token is configured (set BAZAR_ADMIN_TOKEN or BAZAR_ADMIN_TOKEN_FILE)")
    raise ApiError(401, "admin token required (Authorization: Bearer ...)",
                   {"WWW-Authenticate": "Bearer"})
