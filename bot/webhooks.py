"""The shared front door of opsbot's machine-to-machine endpoints (POST /deploys, /webhooks/alertmanager):
disabled unless a bearer token is configured, constant-time token check, bounded body size."""

from __future__ import annotations

import hmac

from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import JSONResponse, Response


async def authorized_body(request: Request, token: SecretStr | None, *, disabled: str,
                          max_body: int) -> bytes | Response:
    """The raw body when the request may proceed, else the response to send (404, 401 or 413)."""
    if token is None:
        return JSONResponse({"error": disabled}, status_code=404)
    given = request.headers.get("authorization", "")
    expected = f"Bearer {token.get_secret_value()}"
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return JSONResponse({"error": "missing or wrong bearer token"}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})
    body = await request.body()
    if len(body) > max_body:
        return JSONResponse({"error": "body too large"}, status_code=413)
    return body
