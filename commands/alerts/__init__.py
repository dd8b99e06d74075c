"""Threshold alerts in Slack: scheduled evaluation, alert buttons, `/alerts`, `/silence`, and
`POST /webhooks/alertmanager`."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from datetime import timedelta
from functools import partial
from typing import Any

from slack_bolt.async_app import AsyncAck
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot import metrics
from bot.config.alerts import AlertRule
from bot.deps import Deps
from bot.durations import format_duration, parse_duration
from bot.errors import InvalidInput
from bot.webhooks import authorized_body
from commands.alerts.notify import engine
from commands.alerts.render import SILENCE_BUTTONS, Action
from commands.common import (
    ack_deferred,
    channel_of,
    ephemeral,
    parse_id,
    refuse,
    request_key,
    right_after_ack,
    split_args,
    user_of,
)
from commands.router import Router

log = logging.getLogger(__name__)

HELP = [
    ("/alerts", "Firing and pending alerts, rules that cannot be evaluated, active silences"),
    ("/silence <rule> <duration>", "Mute a rule's alerts, e.g. `/silence api_p95_latency 2h` (`0` ends it)"),
]
HOUSEKEEPING_JOB = "alerts.housekeeping"
MAX_BODY = 1024 * 1024
MAX_SILENCE = timedelta(days=30)


def eval_job_name(interval: timedelta) -> str:
    return f"alerts.eval.{int(interval.total_seconds())}s"


def rules_by_interval(deps: Deps) -> dict[timedelta, list[AlertRule]]:
    groups: dict[timedelta, list[AlertRule]] = defaultdict(list)
    default = deps.config.alerts.defaults.interval
    for rule in deps.config.alerts.rules:
        groups[max(rule.interval or default, timedelta(seconds=1))].append(rule)
    return groups


# -- /alerts and /silence ---------------------------------------------------------------------
def parse_silence(text: str | None) -> tuple[str, timedelta]:
    """`<rule> <duration>`; pure, so a typo is answered in the ack."""
    words = split_args(text)
    if len(words) < 2:
        raise InvalidInput("Usage: `/silence <rule> <duration>`, e.g. `/silence api_p95_latency 2h`.")
    name, raw = words[0], " ".join(words[1:])
    try:
        duration = parse_duration(raw)
    except ValueError:  # parse_duration's own hint offers 'immediate', which is no silence
        raise InvalidInput(f"`{raw[:40]}` is not a duration: use e.g. 30m, 2h or 1d (`0` ends a silence).") from None
    except OverflowError:  # beyond timedelta's range: certainly longer than the longest silence
        duration = timedelta.max
    if duration > MAX_SILENCE:
        raise InvalidInput(f"A silence lasts at most {format_duration(MAX_SILENCE)}.")
    return name, duration


def _incident_fields(value: Any) -> dict[str, str]:
    """The Open incident button's pre-fill (see render_alert); only string fields survive."""
    try:
        data = json.loads(str(value or "{}"))
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, str)}


def permalink(body: dict[str, Any]) -> str | None:
    """The alert message's link, built from the payload (no Web API call while the trigger is fresh)."""
    domain = (body.get("team") or {}).get("domain")
    container = body.get("container") or {}
    channel, ts = container.get("channel_id"), container.get("message_ts")
    if not (domain and channel and ts):
        return None
    return f"https://{domain}.slack.com/archives/{channel}/p{str(ts).replace('.', '')}"


# -- listeners -----------------------------------------------------------------------------------
async def _verb(ack: AsyncAck, deps: Deps, body: dict[str, Any], action: dict[str, Any], name: str,
                **extra: Any) -> None:
    """A button on an alert message: its job, once per press, one at a time per alert (bot/alerts/flows)."""
    user, channel = user_of(body), channel_of(body)
    try:
        alert_id = parse_id(action.get("value"), what="alert")
    except InvalidInput as exc:  # a forged or altered button: told, nothing looked up
        await ack()
        refuse(deps, exc, user=user, channel=channel)
        return
    await ack_deferred(ack, deps, name, once=request_key(body), user=user, channel=channel, alert_id=alert_id,
                       **extra)


async def ack_button(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], deps: Deps) -> None:
    await _verb(ack, deps, body, action, "alerts.acknowledge")


async def silence_button(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], deps: Deps) -> None:
    await _verb(ack, deps, body, action, "alerts.silence", hours=SILENCE_BUTTONS[Action(action["action_id"])])


async def open_incident_button(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], deps: Deps) -> None:
    await ack()
    user = user_of(body)
    data = _incident_fields(action.get("value"))
    from commands.incident import open_declare_modal  # the incident family owns the modal

    # views.open needs the trigger within 3 s: opened in this process right after the ack, not queued.
    right_after_ack(deps, open_declare_modal(
        deps, trigger_id=body["trigger_id"], user_id=user, title=data.get("t"), description=data.get("d"),
        severity=data.get("s"), service=data.get("svc"), environment=data.get("env"),
        source_link=permalink(body) or data.get("l")), name="alerts.open_incident", user=user,
        channel=channel_of(body))


async def alerts_command(ack: AsyncAck, command: dict[str, Any], deps: Deps) -> None:
    metrics.count_command("alerts")
    await ack_deferred(ack, deps, "alerts.list", user=command["user_id"], channel=command.get("channel_id"),
                       response_url=command.get("response_url"))


async def silence_command(ack: AsyncAck, body: dict[str, Any], command: dict[str, Any], deps: Deps) -> None:
    metrics.count_command("silence")
    try:
        rule, duration = parse_silence(command.get("text"))
    except InvalidInput as exc:
        await ack(ephemeral(f":warning: {exc}"))
        return
    await ack_deferred(ack, deps, "alerts.silence_rule", once=request_key(body), user=command["user_id"],
                       channel=command.get("channel_id"), response_url=command.get("response_url"), rule=rule,
                       seconds=duration.total_seconds())


def register(app: Router) -> None:
    app.action(Action.ACK)(ack_button)
    for action_id in SILENCE_BUTTONS:
        app.action(action_id)(silence_button)
    app.action(Action.INCIDENT)(open_incident_button)
    app.command("/alerts")(alerts_command)
    app.command("/silence")(silence_command)


def schedule(deps: Deps) -> None:
    """Each evaluation interval's cycle and the housekeeping: named jobs run by the scheduler's leader."""
    for interval in rules_by_interval(deps):
        deps.scheduler.every(eval_job_name(interval), interval,
                             partial(deps.run_job, "alerts.evaluate", interval_seconds=interval.total_seconds()))
    deps.scheduler.every(HOUSEKEEPING_JOB, timedelta(minutes=1), partial(deps.run_job, "alerts.housekeeping"))


def routes(deps: Deps) -> list[BaseRoute]:
    async def alertmanager(request: Request) -> Response:
        body = await authorized_body(request, deps.settings.alertmanager_token, max_body=MAX_BODY,
                                     disabled="the Alertmanager webhook is disabled (ALERTMANAGER_TOKEN unset)")
        if isinstance(body, Response):
            return body
        try:
            payload = json.loads(body)
            if not isinstance(payload, dict):
                raise ValueError("expected a JSON object")
            changes = await engine(deps).alertmanager(payload)
        except ValueError as exc:
            return JSONResponse({"error": f"invalid payload: {exc}"}, status_code=400)
        return JSONResponse({"status": "ok", "alerts": len(payload.get("alerts") or []),
                             "changed": len(changes)})

    return [Route("/webhooks/alertmanager", alertmanager, methods=["POST"])]
