"""Deploy history: `POST /deploys` for CI (bearer token), `/deploys <service> [env]` for people."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from pydantic import ValidationError
from slack_bolt.async_app import AsyncAck
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot import deploys, metrics, rollbacks, slack
from bot.deps import Deps
from bot.errors import Conflict, DependencyDown, NotFound, OpsbotError
from bot.jobs import job
from bot.webhooks import authorized_body
from commands import blocks as bk
from commands.common import ack_deferred, ephemeral, responder, split_args, tell
from commands.rollback.render import failed_deploy
from commands.router import Router

HELP = [("/deploys <service> [env]", "Recent deploys of a service (recorded by CI through POST /deploys)")]
MAX_BODY = 64 * 1024
KEY_RE = re.compile(r"[\x21-\x7e][\x20-\x7e]{0,254}")  # the Idempotency-Key header CI sends
SHOWN = 15
FAILED_JOB = "deploys.failed"
log = logging.getLogger(__name__)


def history_blocks(service: str, environment: str | None, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    where = f" in {environment}" if environment else ""
    if not rows:
        return [bk.section(f"No deploys recorded for `{service}`{where}.")]
    lines = [
        f"`{r['version']}` " + ("" if environment else f"*{r['environment']}* ")
        + f"{r['deployed_at']:%Y-%m-%d %H:%M} UTC"
        + (f" · `{r['commit'][:12]}`" if r.get("commit") else "")
        + (f" · {r['deployed_by']}" if r.get("deployed_by") else "")
        + (" · _rollback_" if r.get("source") == "rollback" else "")
        + ("" if r["status"] == "succeeded" else f" · :x: {r['status']}")
        for r in rows
    ]
    return [bk.header(f"Deploys of {service}{where}"), bk.section("\n".join(lines))]


async def deploys_command(ack: AsyncAck, command: dict[str, Any], deps: Deps) -> None:
    metrics.count_command("deploys")
    words = split_args(command.get("text"))
    if not words or len(words) > 2:
        await ack(ephemeral("Usage: `/deploys <service> [env]`"))
        return
    service, environment = words[0], (words[1] if len(words) > 1 else None)
    if environment is not None and deps.config.environments:
        match = _environment(deps, environment)
        if match is None:
            await ack(ephemeral(f":warning: {NotFound('environment', environment, deps.config.environments)}"))
            return
        environment = match
    await ack_deferred(ack, deps, "deploys.list", user=command["user_id"], channel=command.get("channel_id"),
                       response_url=command.get("response_url"), service=service, environment=environment)


def register(app: Router) -> None:
    app.command("/deploys")(deploys_command)


@job("deploys.list", retries=2)
async def list_deploys(deps: Deps, *, user: str, channel: str | None, response_url: str | None, service: str,
                       environment: str | None) -> None:
    rows = await deploys.recent(deps.db, service=service, environment=environment, limit=SHOWN)
    data = [{"version": d.version, "environment": d.environment, "deployed_at": d.deployed_at,
             "commit": d.commit, "deployed_by": d.deployed_by, "source": d.source, "status": d.status}
            for d in rows]
    await tell(deps, text=f"Deploys of {service}", blocks=history_blocks(service, environment, data),
               respond=responder(deps, response_url), user=user, channel=channel)


@job(FAILED_JOB, retries=3)
async def announce_failed(deps: Deps, *, deploy_id: int) -> None:
    """A deploy CI reported as failed, in the ops channel, with a Roll back button when one is configured."""
    deploy = await deploys.get(deps.db, deploy_id)
    if deploy is None:
        return
    try:
        rollbacks.target(deps.config, deploy.service, deploy.environment)
        can_roll_back = True
    except OpsbotError:
        can_roll_back = False
    data = {"service": deploy.service, "environment": deploy.environment, "version": deploy.version,
            "commit": deploy.commit, "deployed_by": deploy.deployed_by}
    text, blocks = failed_deploy(data, can_roll_back=can_roll_back)
    made = await slack.post_once(deps.slack, channel=deps.config.channels.ops_channel, look_first=True,
                                 metadata={"event_type": "opsbot_deploy_failed",
                                           "event_payload": {"deploy_id": deploy.id}},
                                 text=text, blocks=blocks, unfurl_links=False)
    if made.data is None:
        raise DependencyDown(f"Could not announce the failed deploy in {deps.config.channels.ops_channel} "
                             f"({made.error}).")


def _environment(deps: Deps, environment: str) -> str | None:
    """The configured spelling of `environment`, or None."""
    return next((name for name in deps.config.environments if name.lower() == environment.lower()), None)


def routes(deps: Deps) -> list[BaseRoute]:
    async def record(request: Request) -> Response:
        body = await authorized_body(request, deps.settings.deploys_token, max_body=MAX_BODY,
                                     disabled="POST /deploys is disabled: set DEPLOYS_TOKEN to enable it")
        if isinstance(body, Response):
            return body
        try:
            data = json.loads(body or b"null")
            payload = deploys.DeployIn.model_validate(data)
        except ValueError as exc:  # json.JSONDecodeError and pydantic's ValidationError are ValueErrors
            problems = ([{"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()]
                        if isinstance(exc, ValidationError) else [{"field": "", "problem": "body is not JSON"}])
            return JSONResponse({"error": "invalid deploy", "problems": problems}, status_code=422)
        environment = payload.environment
        if deps.config.environments:
            match = _environment(deps, environment)
            if match is None:
                problem = f"unknown environment; valid: {', '.join(deps.config.environments)}"
                return JSONResponse({"error": "invalid deploy", "problems": [
                    {"field": "environment", "problem": problem}]}, status_code=422)
            environment = match
        key = request.headers.get("idempotency-key")
        if key is not None and not KEY_RE.fullmatch(key):
            return JSONResponse({"error": "invalid deploy", "problems": [
                {"field": "Idempotency-Key", "problem": "1 to 255 printable ASCII characters"}]}, status_code=422)
        try:
            recorded = await deploys.record_request(deps.db, clock=deps.clock, payload=payload,
                                                    environment=environment, idempotency_key=key)
        except deploys.KeyReused as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        except Conflict as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        deploy = recorded.deploy
        if recorded.created and deploy.status == "failed":
            try:  # the deploy is recorded either way; the announcement is a job so that it survives a restart
                await deps.queue.defer(FAILED_JOB, {"deploy_id": deploy.id}, once=f"{FAILED_JOB}:{deploy.id}")
            except Exception:
                log.exception("the failed deploy #%s could not be queued for its announcement", deploy.id)
        answer = {"id": deploy.id, "service": deploy.service, "environment": deploy.environment,
                  "version": deploy.version, "status": deploy.status, "deployed_at": deploy.deployed_at.isoformat()}
        if recorded.created:
            return JSONResponse(answer, status_code=201)
        # A retry: the original answer (201 for a replayed Idempotency-Key), marked as a replay.
        return JSONResponse(answer, status_code=201 if recorded.replayed_key else 200,
                            headers={"Idempotent-Replayed": "true"})

    return [Route("/deploys", record, methods=["POST"])]
