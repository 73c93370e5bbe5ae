"""Who may do what over HTTP: the admin's bearer token, checked in constant time."""
from __future__ import annotations

import hmac

from bazar.web.errors import ApiError


def require_bearer(authorization: str | None, token: str | None) -> None:
    """Raise 401 unless `authorization` is `Bearer <token>`; no token configured lets all in.

    Checked before a request's body is read, so an unauthenticated client costs a
    header comparison, never a parse. `hmac.compare_digest` takes the same time
    however much of a wrong token matches.
    """
    if token is None:
        return
    if not hmac.compare_digest((authorization or "").encode(), f"Bearer {token}".encode()):
        raise ApiError(401, "admin token required (Authorization: Bearer ...)",
                       {"WWW-Authenticate": "Bearer"})
