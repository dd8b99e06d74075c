"""Paging (issue 16): the escalation policies' timer, one job per page, PagerDuty's webhooks and `/page`.

`/page <target> <message>` answers with Confirm/Cancel buttons (permission action `page`, rate limited); the
confirmation pages once (subject `manual:<id>`, audited). A target no provider can reach is told at once,
with the forms and names that work here."""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from bot import metrics
from bot.config.targets import BadTarget, parse, unreachable
from bot.paging import valid_forms
from commands.common import ack_deferred, channel_of, ephemeral, request_key, user_of
from commands.paging import render
from commands.paging.ids import Action

if TYPE_CHECKING:
    from slack_bolt.async_app import AsyncAck
    from starlette.routing import BaseRoute

    from bot.deps import Deps
    from commands.router import Router

__all__ = ["HELP", "register", "routes", "schedule"]
ESCALATE_JOB = "paging.escalate"
ESCALATE_EVERY = timedelta(seconds=30)
MAX_MESSAGE = 1000
HELP = [("/page <target> <message>", "Page someone by hand (with a confirmation): @user, @group, "
                                     "oncall:<schedule>, email:…, pagerduty:…, opsgenie:…, webhook:…")]


def parse_page(deps: Deps, text: str | None) -> tuple[str, str]:
    """(target, message), or ValueError with what to write instead (pure: config only)."""
    target_text, _, message = (text or "").strip().partition(" ")
    message = message.strip()
    if not target_text or not message:
        raise ValueError(render.USAGE)
    try:
        target = parse(target_text)
    except BadTarget as exc:
        raise ValueError(render.unreachable(str(exc), valid_forms(deps.config))) from None
    reason = unreachable(deps.config, target)
    if reason:
        raise ValueError(render.unreachable(reason, valid_forms(deps.config)))
    if len(message) > MAX_MESSAGE:
        raise ValueError(f"A page says at most {MAX_MESSAGE} characters.")
    return str(target), message


async def page_command(ack: AsyncAck, command: dict[str, Any], deps: Deps) -> None:
    metrics.count_command("page")
    try:
        target, message = parse_page(deps, command.get("text"))
    except ValueError as exc:
        await ack(ephemeral(f":warning: {exc}"))
        return
    await ack_deferred(ack, deps, "paging.propose", answer=ephemeral(f"Checking {target}…"),
                       once=request_key(command), user=command["user_id"], channel=command.get("channel_id"),
                       response_url=command.get("response_url"), target=target, message=message)


def _token(body: dict[str, Any]) -> str:
    actions = body.get("actions")
    action = actions[0] if isinstance(actions, list) and actions else None
    return str(action.get("value") or "") if isinstance(action, dict) else ""


async def _decision(name: str, ack: AsyncAck, body: dict[str, Any], deps: Deps) -> None:
    await ack_deferred(ack, deps, name, once=request_key(body), user=user_of(body), channel=channel_of(body),
                       response_url=body.get("response_url"), token=_token(body), request=request_key(body))


async def confirm_pressed(ack: AsyncAck, body: dict[str, Any], deps: Deps) -> None:
    await _decision("paging.confirm", ack, body, deps)


async def cancel_pressed(ack: AsyncAck, body: dict[str, Any], deps: Deps) -> None:
    await _decision("paging.cancel", ack, body, deps)


def register(app: Router) -> None:
    app.command("/page")(page_command)
    app.action(Action.CONFIRM.value)(confirm_pressed)
    app.action(Action.CANCEL.value)(cancel_pressed)


def schedule(deps: Deps) -> None:
    deps.scheduler.every(ESCALATE_JOB, ESCALATE_EVERY, partial(deps.run_job, ESCALATE_JOB))


def routes(deps: Deps) -> list[BaseRoute]:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from commands.paging import webhooks

    async def pagerduty(request: Request) -> Response:
        return await webhooks.pagerduty(request, deps)

    return [Route("/webhooks/pagerduty", pagerduty, methods=["POST"])]
