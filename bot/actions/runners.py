"""Running one action: the rollback providers for `command`, `webhook` and `github_actions` (through
`build_runner`, so their output and errors are scrubbed alike), and `http` and `sql` here.

The providers get an `ActionRequest`: a RollbackRequest whose templates are filled from the action's
validated parameters instead of a rollback's fields."""

from __future__ import annotations

import asyncio
import json
import string
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal
from urllib.parse import quote

import httpx
import psycopg
from psycopg.conninfo import conninfo_to_dict

from bot.config.actions import (
    CommandAction,
    GithubAction,
    HttpAction,
    Runner,
    SqlAction,
    WebhookAction,
    template_fields,
)
from bot.config.rollbacks import _escaped_refs as escaped_refs
from bot.durations import format_duration
from bot.errors import ConfigError, OpsbotError, ProviderError
from bot.providers.rollback_base import (
    Progress,
    RollbackOutcome,
    RollbackRequest,
    build_runner,
    cut_output,
    error_message,
    register,
)
from bot.providers.rollback_webhook import WebhookProvider, signature

Scrub = Callable[[str], str]
CELL_LIMIT = 60


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[list[str]]
    more: int = 0  # rows not shown (beyond max_rows)


@dataclass(frozen=True)
class Outcome:
    status: Literal["succeeded", "failed"]
    detail: str
    output: str | None = None
    run_url: str | None = None
    table: Table | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


@dataclass(frozen=True)
class ActionRequest(RollbackRequest):
    """What the rollback providers are given for an action: templates filled from `params` (validated
    values plus environment, action, run_id, requested_by)."""

    params: Mapping[str, str] = field(default_factory=dict)

    def values(self) -> dict[str, str]:
        return dict(self.params)

    def fill(self, template: str) -> str:
        return fill(template, self.values())


def fill(template: str, values: Mapping[str, str], *, quoted: bool = False) -> str:
    """`{name}` placeholders (checked at config load) replaced by validated values."""
    template_fields(template, set(values))
    return template.format_map({k: quote(v, safe="") if quoted else v for k, v in values.items()})


def template_values(*, action: str, environment: str, run_id: int, requested_by: str,
                    params: Mapping[str, Any]) -> dict[str, str]:
    return {**{k: str(v) for k, v in params.items()}, "action": action, "environment": environment,
            "run_id": str(run_id), "requested_by": requested_by}


# -- the rollback providers, for actions ------------------------------------------------------


@register("action_webhook")
class ActionWebhookProvider(WebhookProvider):
    """The rollback webhook's signed POST (same headers, retries), with the action's body."""

    config: Any

    async def run(self, request: RollbackRequest, progress: Progress) -> RollbackOutcome:
        cfg = self.config
        where = f"actions.{request.service}.environments.{request.environment}"
        secret = cfg.secret.reveal(self.environ, where=f"{where}.secret")
        url = cfg.url.reveal(self.environ, where=f"{where}.url")
        params = request.values() if isinstance(request, ActionRequest) else {}
        timestamp = str(int(time.time()))
        delivery = str(uuid.uuid4())
        body = json.dumps({
            "action": request.service, "environment": request.environment,
            "params": {k: v for k, v in params.items() if k not in ("action", "environment", "run_id",
                                                                   "requested_by")},
            "run_id": request.rollback_id, "requested_by": request.requested_by, "delivery": delivery,
            "timestamp": int(timestamp),
        }, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "X-Opsbot-Timestamp": timestamp,
                   "X-Opsbot-Delivery": delivery, "X-Opsbot-Signature": signature(secret, body)}
        try:
            response = await self._post(url, body, headers, progress)
        except ProviderError as exc:
            raise ProviderError(str(exc).replace("rollback webhook", "action's webhook")) from None
        text = response.text
        try:
            status = str((response.json() or {}).get("status") or "").lower()
        except (ValueError, AttributeError):
            status = ""
        if status in ("failed", "failure", "error"):
            return RollbackOutcome("failed", f"The webhook reported *{status}*.", output=text)
        return RollbackOutcome("succeeded", f"The webhook accepted it (HTTP {response.status_code}).", output=text)


class _ProviderConfig:
    """An action runner's config as the rollback providers read it (`provider`, `workflow_inputs`)."""

    def __init__(self, runner: CommandAction | WebhookAction | GithubAction) -> None:
        self._runner = runner
        self.provider = {"command": "command", "webhook": "action_webhook",
                         "github_actions": "github_actions"}[runner.type]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._runner, name)

    def workflow_inputs(self, values: dict[str, str]) -> dict[str, str]:
        runner = self._runner
        assert isinstance(runner, GithubAction)
        if runner.inputs is None:
            builtins = ("action", "environment", "run_id", "requested_by")
            return {k: v for k, v in values.items() if k not in builtins}
        return {name: fill(template, values) for name, template in runner.inputs.items()}


# -- running -------------------------------------------------------------------------------------


async def run(runner: Runner, *, action: str, environment: str, run_id: int, requested_by: str,
              params: Mapping[str, Any], http: httpx.AsyncClient, scrub: Scrub, progress: Progress,
              destructive: bool, environ: Mapping[str, str] | None = None) -> Outcome:
    """Run it; never raises an OpsbotError (a failure is a failed Outcome, its text scrubbed). A `sql` query
    runs in a read-only transaction unless the action is `destructive: true` (whatever `read_only` says)."""
    values = template_values(action=action, environment=environment, run_id=run_id, requested_by=requested_by,
                             params=params)
    try:
        if isinstance(runner, SqlAction):
            return await _sql(runner, params, read_only=not destructive, scrub=scrub, where=f"actions.{action}."
                              f"environments.{environment}", environ=environ)
        if isinstance(runner, HttpAction):
            return await _http(runner, values, http=http, scrub=scrub, environ=environ)
        request = ActionRequest(rollback_id=run_id, service=action, environment=environment, version="",
                                previous_version=None, reason="", requested_by=requested_by, params=values)
        provider = build_runner(_ProviderConfig(runner), http=http, environ=environ, scrub=scrub)
        outcome = await provider.run(request, progress)
        return Outcome(outcome.status, outcome.detail, output=outcome.output, run_url=outcome.run_url)
    except OpsbotError as exc:
        # The rollback providers name their config as `rollbacks.<service>…`; here it is the action's.
        text = str(exc).replace(f"rollbacks.{action}.", f"actions.{action}.")
        return Outcome("failed", scrub(text))


async def _http(runner: HttpAction, values: dict[str, str], *, http: httpx.AsyncClient, scrub: Scrub,
                environ: Mapping[str, str] | None) -> Outcome:
    try:
        url = fill(escaped_refs(runner.url.template, environ, reveal=True), values, quoted=True)
    except ConfigError as exc:
        raise ProviderError(exc.problems[0]) from None
    if not url.startswith(("http://", "https://")):
        raise ProviderError("the URL is not http(s) once its variables are substituted")
    headers = {name: ref.reveal(environ, where=f"headers.{name}") for name, ref in runner.headers.items()}
    body = _fill_body(runner.body, values) if runner.body is not None else None
    try:
        response = await http.request(runner.method, url, headers=headers, json=body,
                                      timeout=runner.timeout.total_seconds())
    except httpx.TimeoutException:
        return Outcome("failed", f"No answer within {format_duration(runner.timeout)}.")
    except httpx.HTTPError as exc:
        return Outcome("failed", f"The request failed ({type(exc).__name__}).")
    expected = runner.expect_status if isinstance(runner.expect_status, list) else [runner.expect_status]
    output = cut_output(scrub(response.text)) if response.text else None
    if response.status_code in expected:
        return Outcome("succeeded", f"{runner.method} answered HTTP {response.status_code}.", output=output)
    return Outcome("failed", scrub(f"{runner.method} answered {error_message(response)}, expected "
                                   f"{' or '.join(map(str, expected))}."), output=output)


def _fill_body(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        return fill(value, values)
    if isinstance(value, dict):
        return {k: _fill_body(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill_body(v, values) for v in value]
    return value


def bind(query: str) -> str:
    """`{name}` placeholders as psycopg's named parameters; a literal `%` kept literal."""
    out = ""
    for literal, name, _spec, _conversion in string.Formatter().parse(query):
        out += literal.replace("%", "%%")
        if name is not None:
            out += f"%({name})s"
    return out


async def _sql(runner: SqlAction, params: Mapping[str, Any], *, read_only: bool, scrub: Scrub, where: str,
               environ: Mapping[str, str] | None) -> Outcome:
    try:
        dsn = runner.dsn.reveal(environ, where=f"{where}.dsn")
    except ConfigError as exc:
        return Outcome("failed", exc.problems[0])
    secrets = [dsn, *_password(dsn)]

    def safe(text: str) -> str:
        for secret in secrets:
            text = text.replace(secret, "***")
        return scrub(text)

    used = set(template_fields(runner.query, set(params) | {"action", "environment", "run_id", "requested_by"}))
    bound = {k: v for k, v in params.items() if k in used}
    timeout_ms = int(runner.statement_timeout / timedelta(milliseconds=1))
    try:
        async with (asyncio.timeout(runner.timeout.total_seconds()),
                    await psycopg.AsyncConnection.connect(dsn, connect_timeout=5,
                                                          application_name="opsbot-action") as conn,
                    conn.transaction(force_rollback=read_only)):
            if read_only:
                await conn.execute("SET TRANSACTION READ ONLY")
            await conn.execute(f"SET LOCAL statement_timeout = {timeout_ms}")
            cursor = await conn.execute(bind(runner.query), bound)
            if cursor.description is None:
                done = f"{cursor.statusmessage or 'done'} ({cursor.rowcount} row(s))"
                return Outcome("succeeded", safe(done))
            columns = [c.name for c in cursor.description]
            fetched = await cursor.fetchmany(runner.max_rows + 1)
            total = cursor.rowcount if cursor.rowcount >= 0 else len(fetched)
            more = max(0, total - runner.max_rows)
            rows = [[safe(_cell(v)) for v in row] for row in fetched[:runner.max_rows]]
    except TimeoutError:
        return Outcome("failed", f"No result within {format_duration(runner.timeout)}.")
    except psycopg.errors.ReadOnlySqlTransaction:
        return Outcome("failed", "Refused: this action is read-only (a write needs `destructive: true`).")
    except psycopg.errors.QueryCanceled:
        return Outcome("failed", f"The query ran longer than its statement timeout "
                                 f"({format_duration(runner.statement_timeout)}) and was cancelled.")
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return Outcome("failed", safe(f"The database refused: {first[:300]}"))
    table = Table([safe(c) for c in columns], rows, more)
    shown = f"{len(rows)} row(s)" + (f", {more} more not shown" if more else "")
    return Outcome("succeeded", shown, output=render_table(table), table=table)


def _password(dsn: str) -> list[str]:
    try:
        password = conninfo_to_dict(dsn).get("password")
    except psycopg.Error:
        return []
    return [str(password)] if password else []


def _cell(value: Any) -> str:
    text = "NULL" if value is None else str(value)
    text = text.replace("\n", " ").replace("`", "'")
    return text if len(text) <= CELL_LIMIT else text[:CELL_LIMIT - 1] + "…"


def render_table(table: Table, *, limit: int = 2800) -> str:
    """Monospace, column-aligned (numbers right-aligned), cut to whole rows within `limit` characters."""
    widths = [len(c) for c in table.columns]
    for row in table.rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    numeric = [all(_number(row[i]) for row in table.rows) and bool(table.rows) for i in range(len(widths))]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.rjust(w) if num else cell.ljust(w)
                         for cell, w, num in zip(cells, widths, numeric, strict=True)).rstrip()

    lines = [line(table.columns), "  ".join("-" * w for w in widths)]
    shown = 0
    for row in table.rows:
        text = line(row)
        if sum(len(x) + 1 for x in lines) + len(text) > limit:
            break
        lines.append(text)
        shown += 1
    hidden = table.more + len(table.rows) - shown
    if not table.rows:
        lines.append("(no rows)")
    if hidden:
        lines.append(f"… {hidden} more row(s)")
    return "\n".join(lines)


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
