"""Helpers for the flag tests (a real feature_flags table, a real admin API), and tests of the pure parts:
command parsing, the body template, state parsing, config validation."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.config import Config
from bot.emulator.harness import BotHarness
from bot.errors import ConfigError, InvalidInput
from bot.models import AuditEntry
from bot.providers.flags_base import FlagChange, FlagState
from bot.providers.flags_http import render_body, state_from_json, template_variables
from commands.flags import parse_flag, parse_killswitch
from commands.flags.ids import Action
from tests.conftest import load_test_config

ALICE, BOB, CAROL = "U0ALICE01", "U0BOB0001", "U0CAROL01"  # alice is @oncall; bob and carol are not


# -- helpers ------------------------------------------------------------------------------------


def flags_config(flags: dict[str, Any]) -> Config:
    return load_test_config({"flags": flags})


@asynccontextmanager
async def flag_table(dsn: str, rows: list[tuple[str, bool, bool, int]] | None = None,
                     ) -> AsyncIterator[str]:
    """A private feature_flags-shaped table in the target database, dropped afterwards."""
    table = f"ff_{uuid.uuid4().hex[:10]}"
    rows = rows if rows is not None else [("checkout", True, False, 100), ("search", False, False, 10)]
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(sql.SQL(
            "CREATE TABLE {} (name text PRIMARY KEY, enabled boolean NOT NULL, "
            "kill_switch boolean NOT NULL DEFAULT false, rollout_percentage integer NOT NULL DEFAULT 100)"
        ).format(sql.Identifier(table)))
        for row in rows:
            await conn.execute(sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s)").format(sql.Identifier(table)), row)
    try:
        yield table
    finally:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))


async def table_rows(dsn: str, table: str) -> dict[str, tuple[bool, bool, int]]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cursor = await conn.execute(sql.SQL("SELECT name, enabled, kill_switch, rollout_percentage FROM {}")
                                    .format(sql.Identifier(table)))
        return {row[0]: (row[1], row[2], row[3]) for row in await cursor.fetchall()}


class AdminApi:
    """A flag admin API as the runbook's curl calls it: bearer token, JSON in, state out; records requests."""

    def __init__(self, token: str = "admin-s3cret-token", *, fail_post: int | None = None,
                 fail_get: int | None = None) -> None:
        self.token = token
        self.fail_post, self.fail_get = fail_post, fail_get
        self.hang_post = False  # answer changes only once `release` is set (timeouts)
        self.release = asyncio.Event()
        self.requests: list[dict[str, Any]] = []
        self.flags: dict[str, dict[str, Any]] = {
            "checkout": {"name": "checkout", "enabled": True, "kill_switch": False, "rollout_percentage": 100},
        }
        self.app = Starlette(routes=[
            Route("/api/admin/feature-flags", self.change, methods=["POST", "PUT"]),
            Route("/api/admin/feature-flags", self.state, methods=["GET"]),
        ])

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.token}"

    async def change(self, request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        self.requests.append({"method": request.method, "headers": dict(request.headers), "json": body})
        if not self._authorized(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        if self.hang_post:
            await self.release.wait()
            return JSONResponse({"error": "too late"}, status_code=504)
        if self.fail_post:
            return JSONResponse({"error": "boom"}, status_code=self.fail_post)
        flag = self.flags.setdefault(body["name"], {"name": body["name"]})
        for field in ("enabled", "kill_switch", "rollout_percentage"):
            if field in body:
                flag[field] = body[field]
        return JSONResponse({"ok": True})

    async def state(self, request: Request) -> JSONResponse:
        self.requests.append({"method": "GET", "headers": dict(request.headers), "json": None})
        if not self._authorized(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        if self.fail_get:
            return JSONResponse({"error": "boom"}, status_code=self.fail_get)
        return JSONResponse({"flags": list(self.flags.values())})

    @property
    def posts(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] != "GET"]


def buttons(bot: BotHarness) -> dict[str, str]:
    """action_id -> value of the buttons on the last response_url answer (the confirmation)."""
    found = {}
    for block in bot.slack.responses[-1].get("blocks") or []:
        if block["type"] == "actions":
            found.update({e["action_id"]: e.get("value", "") for e in block["elements"]})
    return found


async def press(bot: BotHarness, action: Action, *, user: str = ALICE, value: str | None = None,
                channel: str = "general") -> None:
    value = value if value is not None else buttons(bot)[action]
    response = await bot.click(action, value, user=user, channel=channel)
    assert response.status_code == 200


async def audits(bot: BotHarness) -> list[AuditEntry]:
    async with bot.deps.db.session() as session:
        return list((await session.scalars(select(AuditEntry).order_by(AuditEntry.id))).all())


def last_text(bot: BotHarness) -> str:
    return bot.ephemeral_texts()[-1]


# -- pure parts ---------------------------------------------------------------------------------

def test_killswitch_arguments() -> None:
    assert parse_killswitch("checkout on") == ("checkout", FlagChange(kill_switch=True), None)
    assert parse_killswitch("checkout OFF staging") == ("checkout", FlagChange(kill_switch=False), "staging")
    for bad in ("", "checkout", "checkout maybe", "checkout on prod extra"):
        with pytest.raises(InvalidInput, match="Usage"):
            parse_killswitch(bad)


def test_flag_arguments() -> None:
    assert parse_flag("search enable") == ("search", FlagChange(enabled=True), None)
    assert parse_flag("search disable prod") == ("search", FlagChange(enabled=False), "prod")
    assert parse_flag("search rollout 25% staging") == ("search", FlagChange(rollout=25), "staging")
    with pytest.raises(InvalidInput, match="0 to 100"):
        parse_flag("search rollout 101")
    with pytest.raises(InvalidInput, match="0 to 100"):
        parse_flag("search rollout -5")
    with pytest.raises(InvalidInput, match="Usage"):
        parse_flag("search rollout")


def test_body_template_keeps_json_types_and_drops_unknowns() -> None:
    body = {"name": "{{ name }}", "enabled": "{{ enabled }}", "kill_switch": "{{ kill_switch }}",
            "meta": {"pct": "{{ rollout }}", "on": "{{ not kill_switch }}",
                     "note": "set {{ name }} in {{ environment }}"},
            "tags": ["{{ environment }}", 7]}
    context = {"name": "checkout", "enabled": None, "kill_switch": True, "rollout": 40, "environment": "prod"}
    assert render_body(body, context) == {
        "name": "checkout", "kill_switch": True,
        "meta": {"pct": 40, "on": False, "note": "set checkout in prod"}, "tags": ["prod", 7]}
    assert template_variables(body) == {"name", "enabled", "kill_switch", "rollout", "environment"}


def test_body_template_is_sandboxed() -> None:
    from jinja2.exceptions import SecurityError

    with pytest.raises(SecurityError):
        render_body({"x": "{{ name.__class__.__mro__[1].__subclasses__() }}"}, {"name": "x"})


def test_state_responses_in_common_shapes() -> None:
    expected = FlagState(enabled=True, kill_switch=False, rollout=30)
    item = {"name": "a", "enabled": True, "kill_switch": False, "rollout_percentage": 30}
    assert state_from_json(item, "a") == expected
    assert state_from_json([{"name": "b", "enabled": False}, item], "a") == expected
    assert state_from_json({"flags": [item]}, "a") == expected
    assert state_from_json({"a": {"enabled": True, "kill_switch": False, "rollout": 30}}, "a") == expected
    assert state_from_json({"flags": [item]}, "missing") is None


@pytest.mark.parametrize("bad", [
    {"table": "feature_flags; DROP TABLE users"}, {"name_column": "name\" OR 1=1"}, {"table": "a.b.c"},
])
def test_sql_identifiers_are_validated_in_config(bad: dict[str, str]) -> None:
    store = {"provider": "postgres", "dsn": "${APP_DB}", **bad}
    with pytest.raises(ConfigError):
        flags_config({"checkout": {"environments": {"prod": store}}})


@pytest.mark.parametrize(("body", "message"), [
    ({"name": "{{ name "}, "template error"),
    ({"name": "{{ secret }}"}, "unknown template variable secret"),
])
def test_http_body_templates_are_checked_at_load(body: dict[str, str], message: str) -> None:
    store = {"provider": "http", "url": "http://127.0.0.1:9/flags", "body": body}
    with pytest.raises(ConfigError, match=message):
        flags_config({"checkout": {"environments": {"prod": store}}})


def test_confirmation_blocks() -> None:
    from datetime import UTC, datetime

    from bot.flags import Proposal, resolve
    from commands.flags import render

    config = flags_config({"checkout": {"description": "New checkout", "environments": ["prod"]}})
    proposal = Proposal(token="tok", action="killswitch", target=resolve(config, "CHECKOUT"),
                        change=FlagChange(kill_switch=True),
                        before=FlagState(enabled=True, kill_switch=False, rollout=100),
                        expires_at=datetime(2026, 1, 5, 9, 5, tzinfo=UTC))
    assert render.confirmation(proposal, production=True) == [
        {"type": "header", "text": {"type": "plain_text", "text": "Engage kill switch?", "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": (
            "*Flag:* `checkout` — New checkout\n*Environment:* *prod* ⚠️ production (builtin)\n"
            "*Current state:* 🟢 active · enabled · kill switch off · rollout 100%")}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "*Will change:*\nkill switch: off → *ON*"}},
        {"type": "actions", "block_id": "flags_confirm", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Confirm", "emoji": True},
             "action_id": "flags.confirm", "value": "tok", "style": "danger"},
            {"type": "button", "text": {"type": "plain_text", "text": "Cancel", "emoji": True},
             "action_id": "flags.cancel", "value": "tok"}]},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "Only you can confirm; expires in 5 minutes."}]},
    ]


def test_outcome_titles() -> None:
    from commands.flags.render import done_title

    assert done_title("killswitch", FlagChange(kill_switch=False)) == "Kill switch released"
    assert done_title("flag", FlagChange(rollout=30)) == "Rollout set to 30%"
    assert done_title("flag", FlagChange(enabled=False)) == "Flag disabled"
