"""`/run <action> [env] [key=value …]`: configured actions (issue 19), `/run` alone lists them.

Parameters are checked in the ack (errors list the valid values); a job then checks the permission
`action:<name>` and the rate limit, and asks the requester to confirm anything not read-only. Approvals
(`approvals: N`) happen on the run's message; the output goes in its thread, and on the incident timeline
when it was run from an incident channel."""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import Any

from slack_bolt.async_app import AsyncAck

from bot import actions, metrics
from bot.deps import Deps
from bot.errors import InvalidInput, OpsbotError
from commands.common import (
    ack_deferred,
    channel_of,
    ephemeral,
    error_text,
    parse_id,
    refuse,
    request_key,
    split_args,
    user_of,
)
from commands.router import Router
from commands.run import render
from commands.run.ids import Ids

EXPIRE_EVERY = timedelta(seconds=30)
HELP = [("/run [<action> [env] [key=value …]]",
         "Run a configured action (confirmed unless read-only; output in a thread); alone: list the actions")]


async def run_command(ack: AsyncAck, command: dict[str, Any], deps: Deps) -> None:
    metrics.count_command("run")
    words = split_args(command.get("text"))
    if not words or words[0].lower() in ("list", "help"):
        text, blocks = render.action_list(deps.config)
        await ack(ephemeral(text, blocks))
        return
    try:
        name, environment, raw = actions.parse_words(words)
        req = actions.validate(deps.config, action=name, environment=environment, params=raw)
    except OpsbotError as exc:
        text = error_text(exc)
        if "Valid actions" in text:
            text += "\n`/run` lists them with their parameters."
        await ack(ephemeral(text))
        return
    shown = f"`{req.action}` in {req.environment}" + (f" with `{req.shown()}`" if req.params else "")
    await ack_deferred(ack, deps, "actions.request", answer=ephemeral(f"Preparing {shown}…"),
                       once=request_key(command), user=command["user_id"], channel=command.get("channel_id"),
                       response_url=command.get("response_url"), action=req.action, environment=req.environment,
                       params={k: str(v) for k, v in req.params.items()})


async def _pressed(name: str, ack: AsyncAck, body: dict[str, Any], respond: Any, deps: Deps) -> None:
    try:
        run_id = parse_id(body["actions"][0].get("value"), what="action run")
    except (InvalidInput, KeyError, IndexError) as exc:
        await ack()
        refuse(deps, exc if isinstance(exc, InvalidInput) else InvalidInput("This button names no run."),
               respond=respond)
        return
    await ack_deferred(ack, deps, name, once=request_key(body), user=user_of(body), channel=channel_of(body),
                       response_url=body.get("response_url"), run_id=run_id)


async def confirm_pressed(ack: AsyncAck, body: dict[str, Any], respond: Any, deps: Deps) -> None:
    await _pressed("actions.confirm", ack, body, respond, deps)


async def cancel_pressed(ack: AsyncAck, body: dict[str, Any], respond: Any, deps: Deps) -> None:
    await _pressed("actions.cancel", ack, body, respond, deps)


async def approve_pressed(ack: AsyncAck, body: dict[str, Any], respond: Any, deps: Deps) -> None:
    await _pressed("actions.approve", ack, body, respond, deps)


async def reject_pressed(ack: AsyncAck, body: dict[str, Any], respond: Any, deps: Deps) -> None:
    await _pressed("actions.reject", ack, body, respond, deps)


def register(app: Router) -> None:
    app.command("/run")(run_command)
    app.action(Ids.CONFIRM.value)(confirm_pressed)
    app.action(Ids.CANCEL.value)(cancel_pressed)
    app.action(Ids.APPROVE.value)(approve_pressed)
    app.action(Ids.REJECT.value)(reject_pressed)


def schedule(deps: Deps) -> None:
    """Expired confirmations and approvals, lost runs: the `actions.expire` job every 30 s."""
    deps.scheduler.every("actions.expire", EXPIRE_EVERY, partial(deps.run_job, "actions.expire"))
