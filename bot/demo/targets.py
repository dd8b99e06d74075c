"""The demo's targets, one small HTTP app on loopback: what examples/opsbot.yml's made-up hosts would answer.

- `GET /health` — `{"status": "healthy", "database": "connected"}` (503 and the reason when `api` is broken)
- `GET /` — the website; `GET /api/admin/users` — 401 without the admin token (the auth guard)
- `GET /payments/health` — `{"checks": {"database": "ok"}}` with the payments bearer token, else 401
- `GET|POST /api/admin/feature-flags` — a flag store in the admin-API style (bearer admin token)
- `GET /internal/pool` — `{"pool": {"checked_out": N, "size": 20}}`, the metric `:break latency` raises
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from bot.emulator.localserver import LocalServer

POOL_SIZE = 20
POOL_NORMAL = 6      # 30 % of the pool
POOL_SATURATED = 19  # 95 %: over the demo rule's warning (80 %) and critical (> 90 %) thresholds
BREAKABLE = {
    "api": "the app's /health answers 503: database disconnected",
    "payments": "the payments health reports its database down",
    "web": "the website answers 502",
    "latency": "the DB pool metric goes to 95% (the db_pool_usage alert fires on the next evaluation)",
    "flags": "the flag admin API answers 503",
}


@dataclass
class DemoState:
    broken: set[str] = field(default_factory=set)
    flags: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        "checkout": {"name": "checkout", "enabled": True, "kill_switch": False, "rollout_percentage": 100}})
    requests: list[str] = field(default_factory=list)  # "METHOD path" of every request, for tests

    @property
    def pool(self) -> int:
        return POOL_SATURATED if "latency" in self.broken else POOL_NORMAL


class DemoTargets:
    """`await DemoTargets().start()`; `.url`, `.env()` (the DEMO_* variables), `.break_(name)`, `.fix(name)`."""

    def __init__(self) -> None:
        self.state = DemoState()
        self.admin_token = "demo-admin-" + secrets.token_hex(8)
        self.payments_token = "demo-payments-" + secrets.token_hex(8)
        self.server = LocalServer(Starlette(routes=[
            Route("/", self._web), Route("/health", self._health), Route("/api/admin/users", self._admin_users),
            Route("/payments/health", self._payments),
            Route("/api/admin/feature-flags", self._flags, methods=["GET", "POST"]),
            Route("/internal/pool", self._pool),
        ]))

    async def start(self) -> DemoTargets:
        await self.server.start()
        return self

    async def stop(self) -> None:
        await self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    def env(self) -> dict[str, str]:
        return {"DEMO_URL": self.url, "DEMO_ADMIN_TOKEN": self.admin_token,
                "DEMO_PAYMENTS_TOKEN": self.payments_token}

    def break_(self, name: str) -> str:
        """Break `name` (one of BREAKABLE); returns what that looks like. KeyError for an unknown name."""
        what = BREAKABLE[name]
        self.state.broken.add(name)
        return what

    def fix(self, name: str) -> bool:
        """Fix `name` ("all" fixes everything); False when it was not broken. KeyError for an unknown name."""
        if name == "all":
            was = bool(self.state.broken)
            self.state.broken.clear()
            return was
        if name not in BREAKABLE:
            raise KeyError(name)
        was = name in self.state.broken
        self.state.broken.discard(name)
        return was

    # -- endpoints -----------------------------------------------------------------------
    def _seen(self, request: Request) -> None:
        self.state.requests.append(f"{request.method} {request.url.path}")

    def _bearer(self, request: Request, token: str) -> bool:
        given = request.headers.get("authorization", "")
        return secrets.compare_digest(given.encode(), f"Bearer {token}".encode())

    async def _web(self, request: Request) -> Response:
        self._seen(request)
        if "web" in self.state.broken:
            return HTMLResponse("<h1>502 Bad Gateway</h1>", status_code=502)
        return HTMLResponse("<!doctype html><title>Acme</title><h1>Acme shop (opsbot demo)</h1>")

    async def _health(self, request: Request) -> Response:
        self._seen(request)
        if "api" in self.state.broken:
            return JSONResponse({"status": "unhealthy", "database": "disconnected", "error": "Connection refused"},
                                status_code=503)
        return JSONResponse({"status": "healthy", "database": "connected"})

    async def _admin_users(self, request: Request) -> Response:
        self._seen(request)
        if not self._bearer(request, self.admin_token):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        return JSONResponse({"users": [{"name": "alice"}, {"name": "bob"}]})

    async def _payments(self, request: Request) -> Response:
        self._seen(request)
        if not self._bearer(request, self.payments_token):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        database = "down" if "payments" in self.state.broken else "ok"
        return JSONResponse({"status": "ok" if database == "ok" else "degraded", "checks": {"database": database}},
                            status_code=200 if database == "ok" else 503)

    async def _flags(self, request: Request) -> Response:
        self._seen(request)
        if not self._bearer(request, self.admin_token):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        if "flags" in self.state.broken:
            return JSONResponse({"error": "flag store unavailable"}, status_code=503)
        if request.method == "POST":
            try:
                body = await request.json()
            except ValueError:
                body = None
            if not isinstance(body, dict) or not isinstance(body.get("name"), str):
                return JSONResponse({"error": "a JSON object with a name is required"}, status_code=400)
            flag = self.state.flags.setdefault(body["name"], {"name": body["name"], "enabled": False,
                                                               "kill_switch": False, "rollout_percentage": 0})
            for key in ("enabled", "kill_switch"):
                if isinstance(body.get(key), bool):
                    flag[key] = body[key]
            rollout = body.get("rollout_percentage", body.get("rollout"))
            if isinstance(rollout, int) and not isinstance(rollout, bool) and 0 <= rollout <= 100:
                flag["rollout_percentage"] = rollout
            return JSONResponse(flag)
        return JSONResponse({"flags": list(self.state.flags.values())})

    async def _pool(self, request: Request) -> Response:
        self._seen(request)
        return JSONResponse({"pool": {"checked_out": self.state.pool, "size": POOL_SIZE}})


__all__ = ["BREAKABLE", "DemoState", "DemoTargets"]
