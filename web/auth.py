"""Who may do what over HTTP: the admin's bearer token, checked in constant time."""
from __future__ import annotations

import hmac

from bazar.web.errors import ApiError


def is_admin(authorization: str | None, token: str | None) -> bool:
    """True if `authorization` is `Bearer <token>`, or no token is configured (an open
    cluster, for loopback development: there everyone is the admin).

    `hmac.compare_digest` takes the same time however much of a wrong token matches.
    """
    if token is None:
        return True
    return hmac.compare_digest((authorization or "").encode(), f"Bearer {token}".encode())


def require_bearer(authorization: str | None, token: str | None) -> None:
    """Raise 401 unless `is_admin`. Checked before a request's body is read, so an
    unauthenticated client costs a header comparison, never a parse."""
    if not is_admin(authorization, token):
        raise ApiError(401, "admin token required (Authorization: Bearer ...)",
                       {"WWW-Authenticate": "Bearer"})
