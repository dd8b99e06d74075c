"""The shared front door of opsbot's machine-to-machine endpoints (POST /deploys, /webhooks/alertmanager):
disabled unless a bearer token is configured, constant-time token check, body size bounded while it is read
(bot/bodies.py)."""

from __future__ import annotations

import hmac

from pydantic import SecretStr
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from bot.bodies import TooLarge, read_body, too_large


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
    try:
        return await read_body(request, limit=max_body)
    except TooLarge as exc:
        return too_large(exc)
    except ClientDisconnect:
        return Response(status_code=400)  # nobody is left to read it
