"""Shared by the status page tests: a target whose checks fail on demand, the config, and declaring."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.config import Config
from bot.emulator.harness import BotHarness
from bot.emulator.localserver import LocalServer
from bot.models import Incident
from tests.conftest import load_test_config


class Target:
    """A service under health checks: `target.down("checkout-db")` makes that path answer 503."""

    def __init__(self) -> None:
        self.failing: set[str] = set()
        self.url = ""

    def down(self, *names: str) -> None:
        self.failing |= set(names)

    def up(self, *names: str) -> None:
        self.failing -= set(names) if names else set(self.failing)

    def app(self) -> Starlette:
        async def answer(request: Request) -> Response:
            name = request.path_params["name"]
            return JSONResponse({"ok": name not in self.failing}, status_code=503 if name in self.failing else 200)

        return Starlette(routes=[Route("/{name}", answer)])


@asynccontextmanager
async def running_target() -> AsyncIterator[Target]:
    target = Target()
    async with LocalServer(target.app()) as server:
        target.url = server.url
        yield target


def page_config(url: str, **page: Any) -> Config:
    return load_test_config({
        "environments": {
            "prod": {"default": True, "monitor": "1m", "checks": [
                {"name": "api-health", "url": f"{url}/api", "services": ["api"]},
                {"name": "checkout-health", "url": f"{url}/checkout", "services": ["checkout"]},
                {"name": "checkout-db", "url": f"{url}/checkout-db", "services": ["checkout"]},
                {"name": "web", "url": f"{url}/web"},
            ]},
            "staging": {},
        },
        "status_page": {"title": "Example status", "components": [
            {"name": "API", "description": "Public REST API", "group": "Platform", "services": ["api"]},
            {"name": "Checkout", "description": "Cart and payments", "group": "Platform", "services": ["checkout"]},
            {"name": "Website", "description": "www.example.com", "checks": ["web"]},
        ], **page},
    })


async def monitor(bot: BotHarness) -> None:
    """The monitor, then the status page's sync: what the scheduler's leader does every minute."""
    await bot.run_job("health.monitor.prod")
    await bot.run_job("statuspage.sync")


def declare_values(title: str, severity: str, *, service: str | None = None,
                   environment: str | None = "prod") -> dict[str, dict[str, Any]]:
    def text(value: str | None) -> dict[str, Any]:
        return {"type": "plain_text_input", "value": value or None}

    return {"title": {"title": text(title)},
            "severity": {"severity": {"type": "static_select", "selected_option": {"value": severity}}},
            "service": {"service": text(service)},
            "environment": {"environment": {"type": "static_select",
                                            "selected_option": {"value": environment} if environment else None}},
            "impact": {"impact": text(None)}, "description": {"description": text(None)},
            "commander": {"commander": {"type": "users_select", "selected_user": "U0ALICE01"}}}


async def declare(bot: BotHarness, title: str, severity: str = "P2", *, service: str | None = None) -> Incident:
    await bot.command("/incident", "")
    await bot.submit(bot.last_view(), declare_values(title, severity, service=service))
    async with bot.deps.db.session() as session:
        found = (await session.scalars(select(Incident).order_by(Incident.id.desc()))).first()
    assert found is not None and found.channel_id
    return found
