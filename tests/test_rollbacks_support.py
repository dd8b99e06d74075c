"""Helpers for the rollback tests (a fake GitHub API, a webhook receiver, a health endpoint, local
scripts) and tests of the pure parts: parsing, templates, config validation, rendering."""

from __future__ import annotations

import itertools
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.config import Config
from bot.emulator.harness import BotHarness
from bot.emulator.state import Message
from bot.errors import ConfigError, InvalidInput, NotFound
from bot.models import AuditEntry, Deploy, Rollback
from bot.providers.rollback_base import RollbackRequest
from bot.providers.rollback_webhook import signature, verify_signature
from bot.rollbacks import target
from commands.rollback import parse, render, submission_errors
from commands.rollback.ids import Ids
from tests.conftest import load_test_config

ALICE, BOB, CAROL, DAVE = "U0ALICE01", "U0BOB0001", "U0CAROL01", "U0DAVE001"  # alice is @oncall, carol a lead
GITHUB_TOKEN = "ghp_test_token_never_shown"
WEBHOOK_SECRET = "whsec_test_never_shown"


# -- configs and scripts -----------------------------------------------------------------------

def rollback_config(services: dict[str, Any], *, environments: dict[str, Any] | None = None,
                    approval_timeout: str = "30m") -> Config:
    overrides: dict[str, Any] = {"rollbacks": services, "rollback": {"approval_timeout": approval_timeout}}
    if environments is not None:
        overrides["environments"] = environments
    return load_test_config(overrides)


def script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("import os, sys, time\n" + body)
    return str(path)


def command_runner(tmp_path: Path, body: str = "print('rolling back', *sys.argv[1:])\n", **extra: Any) -> dict:
    path = script(tmp_path, "rollback_script.py", body)
    return {"provider": "command", "argv": [sys.executable, path, "{service}", "{environment}", "{version}",
                                            "--reason={reason}"], **extra}


# -- driving the flow --------------------------------------------------------------------------

def _initial(view: dict[str, Any], block_id: str) -> str:
    block = next(b for b in view["blocks"] if b.get("block_id") == block_id)
    if block["element"]["type"] == "static_select":
        return str((block["element"].get("initial_option") or {}).get("value", ""))
    return str(block["element"].get("initial_value", ""))


def version_choices(view: dict[str, Any]) -> list[str]:
    """The versions the modal offers in its select (empty: a plain text field)."""
    block = next((b for b in view["blocks"] if b.get("block_id") == Ids.VERSION_BLOCK), None)
    return [o["value"] for o in block["element"].get("options", [])] if block else []


async def open_modal(bot: BotHarness, text: str, *, user: str = ALICE, channel: str = "general") -> dict[str, Any]:
    views_before = len(bot.slack.view_log)
    await bot.command("/rollback", text, user=user, channel=channel)
    assert len(bot.slack.view_log) == views_before + 1, bot.ephemeral_texts()
    return bot.last_view()


async def submit(bot: BotHarness, view: dict[str, Any], *, user: str = ALICE, version: str | None = None,
                 reason: str = "5xx spike after the deploy", confirm: str | None = None,
                 other: str | None = None) -> httpx.Response:
    chosen = _initial(view, Ids.VERSION_BLOCK) if version is None else version
    values: dict[str, Any] = {Ids.REASON_BLOCK: {Ids.REASON: {"type": "plain_text_input", "value": reason}}}
    if version_choices(view):
        values[Ids.VERSION_BLOCK] = {Ids.VERSION: {"type": "static_select", "selected_option":
                                                   {"value": chosen} if chosen else None}}
        values[Ids.OTHER_VERSION_BLOCK] = {Ids.OTHER_VERSION: {"type": "plain_text_input", "value": other}}
    else:
        values[Ids.VERSION_BLOCK] = {Ids.VERSION: {"type": "plain_text_input", "value": chosen}}
    if confirm is not None:
        values[Ids.CONFIRM_BLOCK] = {Ids.CONFIRM: {"type": "plain_text_input", "value": confirm}}
    return await bot.submit(view, values, user=user)


async def request_rollback(bot: BotHarness, text: str, *, user: str = ALICE, channel: str = "general",
                           version: str | None = None, reason: str = "5xx spike after the deploy") -> httpx.Response:
    view = await open_modal(bot, text, user=user, channel=channel)
    response = await submit(bot, view, user=user, version=version, reason=reason)
    assert response.status_code == 200
    return response


def request_message(bot: BotHarness) -> Message:
    top = [m for m in bot.messages("#ops") if m.thread_ts is None]
    assert top, "no rollback message in #ops"
    return top[-1]


def last_reply(bot: BotHarness) -> str:
    """The latest ephemeral answer through response_url (button clicks, slash commands)."""
    assert bot.slack.responses, "no ephemeral answer"
    return str(bot.slack.responses[-1].get("text", ""))


def thread(bot: BotHarness, message: Message) -> str:
    return "\n".join(m.all_text() for m in bot.messages(message.channel) if m.thread_ts == message.ts)


async def rollbacks_in_db(bot: BotHarness) -> list[Rollback]:
    async with bot.deps.db.session() as session:
        return list((await session.scalars(select(Rollback).order_by(Rollback.id))).all())


async def deploys_in_db(bot: BotHarness) -> list[Deploy]:
    async with bot.deps.db.session() as session:
        return list((await session.scalars(select(Deploy).order_by(Deploy.id))).all())


async def audit_actions(bot: BotHarness) -> list[tuple[str, str, str]]:
    async with bot.deps.db.session() as session:
        rows = (await session.scalars(select(AuditEntry).order_by(AuditEntry.id))).all()
        return [(r.actor, r.action, r.outcome) for r in rows]


async def record_deploys(bot: BotHarness, service: str, environment: str, *versions: str) -> None:
    from bot import deploys

    async with bot.deps.db.session() as session:
        for i, version in enumerate(versions):
            await deploys.record(session, clock=bot.clock, service=service, environment=environment,
                                 version=version, deployed_at=bot.clock() - timedelta(hours=len(versions) - i))


def everything_said(bot: BotHarness) -> str:
    """Every message, ephemeral and view the bot produced (to check that no secret leaked)."""
    texts = [m.all_text() for c in bot.slack.channels.values() for m in c.messages]
    return "\n".join(texts + bot.ephemeral_texts() + [json.dumps(v) for v in bot.slack.view_log])


# -- fake target systems -----------------------------------------------------------------------

class FakeGitHub:
    """The three Actions endpoints opsbot uses; a dispatched run shows up on the second listing and
    progresses queued -> in_progress -> completed, one step per status read."""

    def __init__(self, *, token: str = GITHUB_TOKEN, conclusion: str = "success",
                 declared: dict[str, bool] | None = None) -> None:
        self.token, self.conclusion = token, conclusion
        # The workflow's `on.workflow_dispatch.inputs` (name -> required); None accepts any input.
        self.declared = declared
        self.dispatches: list[dict[str, Any]] = []
        self.list_queries: list[dict[str, str]] = []
        self._ids = itertools.count(500)
        old = datetime.now(UTC) - timedelta(hours=2)
        # A run from an earlier dispatch: must never be mistaken for ours.
        self.runs: list[dict[str, Any]] = [self._run(400, old, status="completed", conclusion="success")]
        self.hidden: list[dict[str, Any]] = []
        self.reads: dict[int, int] = {}
        self.failing_reads = 0  # the next N reads of a run answer 502, as GitHub sometimes does
        self.url = ""

    def _run(self, run_id: int, created: datetime, *, status: str = "queued",
             conclusion: str | None = None) -> dict[str, Any]:
        return {"id": run_id, "run_number": run_id - 399, "status": status, "conclusion": conclusion,
                "event": "workflow_dispatch", "head_branch": "main",
                "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "html_url": f"https://github.example/acme/api/actions/runs/{run_id}"}

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.token}"

    def app(self) -> Starlette:
        async def dispatch(request: Request) -> Response:
            if not self._authorized(request):
                return JSONResponse({"message": "Bad credentials"}, status_code=401)
            body = await request.json()
            inputs = body.get("inputs") or {}
            if not isinstance(body.get("ref"), str) or not all(isinstance(v, str) for v in inputs.values()):
                return JSONResponse({"message": "Invalid request"}, status_code=422)
            if self.declared is not None:  # as GitHub answers for a workflow's declared inputs
                unexpected = [name for name in inputs if name not in self.declared]
                if unexpected:
                    return JSONResponse({"message": f"Unexpected inputs provided: {json.dumps(unexpected)}",
                                         "documentation_url": "https://docs.github.com/rest"}, status_code=422)
                absent = [name for name, required in self.declared.items() if required and name not in inputs]
                if absent:
                    return JSONResponse({"message": f"Required input '{absent[0]}' not provided"}, status_code=422)
            self.dispatches.append({"path": request.url.path, **body})
            self.hidden.append(self._run(next(self._ids), datetime.now(UTC)))
            return Response(status_code=204)

        async def list_runs(request: Request) -> Response:
            if not self._authorized(request):
                return JSONResponse({"message": "Bad credentials"}, status_code=401)
            self.list_queries.append(dict(request.query_params))
            runs = list(reversed(self.runs))  # newest first
            # GitHub lists a new run a moment after the dispatch: reveal it on the next listing.
            self.runs += self.hidden
            self.hidden = []
            return JSONResponse({"total_count": len(runs), "workflow_runs": runs})

        async def get_run(request: Request) -> Response:
            if not self._authorized(request):
                return JSONResponse({"message": "Bad credentials"}, status_code=401)
            if self.failing_reads:
                self.failing_reads -= 1
                return JSONResponse({"message": "Server Error"}, status_code=502)
            run_id = int(request.path_params["run_id"])
            run = next((r for r in self.runs if r["id"] == run_id), None)
            if run is None:
                return JSONResponse({"message": "Not Found"}, status_code=404)
            self.reads[run_id] = self.reads.get(run_id, 0) + 1
            if run["status"] == "queued":
                run["status"] = "in_progress"
            elif run["status"] == "in_progress":
                run["status"], run["conclusion"] = "completed", self.conclusion
            return JSONResponse(run)

        prefix = "/repos/{owner}/{repo}/actions"
        return Starlette(routes=[
            Route(prefix + "/workflows/{workflow}/dispatches", dispatch, methods=["POST"]),
            Route(prefix + "/workflows/{workflow}/runs", list_runs, methods=["GET"]),
            Route(prefix + "/runs/{run_id:int}", get_run, methods=["GET"]),
        ])


class WebhookReceiver:
    """Checks the HMAC signature like a real receiver; `fail_first` answers 503 that many times."""

    def __init__(self, *, secret: str = WEBHOOK_SECRET, fail_first: int = 0, status: int = 200,
                 states: list[str] | None = None, answer: dict[str, Any] | None = None) -> None:
        self.secret, self.fail_first, self.status = secret, fail_first, status
        self.states = list(states or [])
        self.answer = answer or {"status": "accepted"}
        self.attempts = 0
        self.accepted: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.bad_signatures = 0
        self.status_reads = 0

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            self.attempts += 1
            raw = await request.body()
            if not verify_signature(self.secret, raw, request.headers.get("x-opsbot-signature")):
                self.bad_signatures += 1
                return JSONResponse({"error": "bad signature"}, status_code=401)
            body = json.loads(raw)
            if str(body["timestamp"]) != request.headers.get("x-opsbot-timestamp"):
                return JSONResponse({"error": "timestamp mismatch"}, status_code=401)
            self.headers.append(dict(request.headers))
            if self.fail_first > 0:
                self.fail_first -= 1
                return JSONResponse({"error": "deploy system busy"}, status_code=503)
            if self.status != 200:
                return JSONResponse({"message": "refused"}, status_code=self.status)
            self.accepted.append(body)
            return JSONResponse(self.answer)

        async def status(request: Request) -> Response:
            self.status_reads += 1
            state = self.states.pop(0) if len(self.states) > 1 else (self.states[0] if self.states else "running")
            return JSONResponse({"status": state, "detail": f"step {self.status_reads}",
                                 "url": "https://deploy.example/runs/7"})

        return Starlette(routes=[Route("/hooks/rollback", hook, methods=["POST"]),
                                 Route("/status/{rollback_id}", status, methods=["GET"])])


class HealthApp:
    def __init__(self, healthy: bool = True) -> None:
        self.healthy = healthy
        self.hits = 0

    def app(self) -> Starlette:
        async def health(request: Request) -> Response:
            self.hits += 1
            if self.healthy:
                return JSONResponse({"status": "healthy"})
            return JSONResponse({"status": "down"}, status_code=503)

        return Starlette(routes=[Route("/health", health)])


# -- pure parts ----------------------------------------------------------------------------------

def test_parse_accepts_service_env_and_target_version() -> None:
    assert parse(["api"]) == ("api", None, None)
    assert parse(["api", "prod"]) == ("api", "prod", None)
    assert parse(["api", "prod", "to", "v1.2.3"]) == ("api", "prod", "v1.2.3")
    assert parse(["api", "to", "registry.example/api@sha256:abc"]) == ("api", None, "registry.example/api@sha256:abc")


@pytest.mark.parametrize("words", [[], ["api", "prod", "v1"], ["api", "prod", "to"], ["api", "to", "-rf"],
                                   ["api", "to", "v1;rm -rf /"], ["api", "to", "$(id)"], ["api", "to", "a" * 129]])
def test_parse_refuses_malformed_commands_and_versions(words: list[str]) -> None:
    with pytest.raises(InvalidInput):
        parse(words)


def test_target_defaults_approvals_by_environment_and_lists_valid_names(tmp_path: Path) -> None:
    config = rollback_config({"api": {"environments": {"prod": command_runner(tmp_path),
                                                       "staging": command_runner(tmp_path)}},
                              "web": {"environments": {"staging": command_runner(tmp_path, approvals=1)}}})
    assert target(config, "API", "PROD").approvals == 2
    assert target(config, "api", None).environment == "prod"  # the default environment
    assert target(config, "api", "staging").approvals == 0
    assert target(config, "web", None).environment == "staging"  # its only environment
    assert target(config, "web", "staging").approvals == 1
    with pytest.raises(NotFound, match="Valid services: `api`, `web`"):
        target(config, "db", None)
    with pytest.raises(NotFound, match="Valid environments: `staging`"):
        target(config, "web", "prod")


def test_explicit_zero_approvals_in_production_is_respected(tmp_path: Path) -> None:
    config = rollback_config({"api": {"environments": {"prod": command_runner(tmp_path, approvals=0)}}})
    assert target(config, "api", "prod").approvals == 0


@pytest.mark.parametrize("bad", [
    {"provider": "command", "argv": ["deploy", "{reason}"]},
    {"provider": "command", "argv": ["deploy", "{reason} (rollback)"]},
    {"provider": "command", "argv": ["deploy", " {reason}"]},
    {"provider": "command", "argv": ["deploy", "{previous_version}{reason}"]},
    {"provider": "command", "argv": ["deploy", "{version.__class__}"]},
    {"provider": "command", "argv": ["deploy", "{token}"]},
    {"provider": "command", "argv": ["{service}", "x"]},
    {"provider": "github_actions", "repo": "acme/api", "workflow": "r.yml", "token": "${T}",
     "inputs": {"x": "{version!r}"}},
    {"provider": "webhook", "url": "https://x.example/hook", "secret": "${S}", "status_url": "ftp://x/{id}"},
])
def test_config_refuses_unsafe_templates(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        rollback_config({"api": {"environments": {"staging": bad}}})


@pytest.mark.parametrize("arg", ["--reason={reason}", "{service}: {reason}", "{version} {reason}"])
def test_config_accepts_reason_after_fixed_text(arg: str) -> None:
    config = rollback_config({"api": {"environments": {"staging": {"provider": "command", "argv": ["deploy", arg]}}}})
    assert config.rollbacks["api"].environments["staging"].argv == ["deploy", arg]


def test_request_values_fill_templates_and_revalidate_versions() -> None:
    request = RollbackRequest(rollback_id=7, service="api", environment="prod", version="v1",
                              previous_version="v2", reason="it broke", requested_by=ALICE)
    assert request.fill("--to={version} --from={previous_version} #{rollback_id}") == "--to=v1 --from=v2 #7"
    with pytest.raises(InvalidInput):
        RollbackRequest(rollback_id=7, service="api", environment="prod", version="-rf", previous_version=None,
                        reason="x", requested_by=ALICE).fill("{version}")


def test_webhook_signature_is_hmac_sha256_of_the_raw_body() -> None:
    body = b'{"service":"api"}'
    header = signature("s3cret", body)
    assert header == "sha256=" + __import__("hmac").new(b"s3cret", body, "sha256").hexdigest()
    assert verify_signature("s3cret", body, header)
    assert not verify_signature("s3cret", body + b" ", header)
    assert not verify_signature("other", body, header)
    assert not verify_signature("s3cret", body, None)


def test_submission_errors_are_inline() -> None:
    assert submission_errors("v1", "broken", "v2") == {}
    errors = submission_errors("", "", "v2")
    assert set(errors) == {Ids.VERSION_BLOCK, Ids.REASON_BLOCK}
    assert "running now" in submission_errors("v2", "x", "v2")[Ids.VERSION_BLOCK]


def test_request_message_has_buttons_only_while_pending() -> None:
    summary = {"id": 3, "service": "api", "environment": "prod", "from": "v2", "to": "v1", "reason": "errors",
               "requested_by": ALICE, "status": "pending_approval", "approvals_required": 2,
               "approved_by": [BOB], "rejected_by": None, "run_url": None, "verification": None,
               "expires_at": "09:30 UTC", "provider": "command"}
    text, blocks = render.request_message(summary)
    assert "Waiting for 1 more approval" in text
    buttons = [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert buttons == [Ids.APPROVE, Ids.REJECT]
    _, done = render.request_message({**summary, "status": "succeeded", "verification": "unhealthy"})
    assert not [b for b in done if b["type"] == "actions"]
    assert "Rolled back but unhealthy" in json.dumps(done)
