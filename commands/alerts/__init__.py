"""Threshold alerts in Slack: scheduled evaluation, alert buttons, `/alerts`, `/silence`, and
`POST /webhooks/alertmanager`."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from datetime import timedelta
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot import alerts, metrics
from bot.config.alerts import AlertRule
from bot.deps import Deps
from bot.durations import format_duration, parse_duration
from bot.errors import InvalidInput
from bot.models import AlertState
from bot.webhooks import authorized_body
from commands.alerts.notify import deliver, engine_for
from commands.alerts.render import SILENCE_BUTTONS, Action, ListedAlert, format_value, render_list, when
from commands.common import channel_of, ephemeral, parse_id, refuse, request_key, run_after_ack, split_args, user_of

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


def _environment(labels: dict[str, Any]) -> str | None:
    env = labels.get("env") or labels.get("environment")
    return str(env) if env else None


def _alert_environment(deps: Deps, row: AlertState) -> str | None:
    """The environment of an alert as its message shows it: the rule's config labels, then the series'."""
    rule = next((r for r in deps.config.alerts.rules if r.name == row.rule), None)
    configured = rule.labels if rule is not None and row.source != alerts.ALERTMANAGER else {}
    return _environment({**configured, **(row.labels or {})})


# -- button verbs -------------------------------------------------------------------------
async def _load(deps: Deps, row_id: int) -> AlertState:
    async with deps.db.session() as session:
        row = await session.get(AlertState, row_id)
    if row is None:
        raise InvalidInput("That alert no longer exists.")
    return row


async def acknowledge(deps: Deps, *, row_id: int, user: str) -> None:
    row = await _load(deps, row_id)
    await deps.require(user=user, action="alert.ack", target=row.rule, environment=_alert_environment(deps, row))
    row = await alerts.acknowledge(deps.db, clock=deps.clock, row_id=row_id, user=user)
    await _resync(deps, row)


async def silence(deps: Deps, *, row_id: int, user: str, hours: int) -> None:
    row = await _load(deps, row_id)
    await deps.require(user=user, action="alert.silence", target=row.rule, environment=_alert_environment(deps, row))
    row = await alerts.silence(deps.db, clock=deps.clock, row_id=row_id, user=user, duration=timedelta(hours=hours))
    await _resync(deps, row)
    if row.message_ts and row.channel:
        await deps.slack.chat_postMessage(channel=row.channel, thread_ts=row.message_ts,
                                          text=f"🔕 Silenced for {hours}h by <@{user}>.")


async def _resync(deps: Deps, row: AlertState) -> None:
    engine = engine_for(deps)
    rule = engine.rules.get(row.rule) if row.source != alerts.ALERTMANAGER else None
    async with deps.db.session() as session:
        rule_silence = (await alerts.active_silences(session, deps.clock())).get(row.rule)
    change = alerts.Change(row, [alerts.Notice.SYNC], alerts.policy_for(rule, deps.config.alerts), rule,
                           rule_silence)
    async with engine.lock:
        await deliver(deps, [change])


# -- /alerts and /silence ---------------------------------------------------------------------
async def list_alerts(deps: Deps) -> list[dict[str, Any]]:
    now = deps.clock()
    rules = {r.name: r for r in deps.config.alerts.rules}
    async with deps.db.session() as session:
        rows = await alerts.active_alerts(session)
        silences = await alerts.active_silences(session, now)
    listed = []
    for row in rows:
        rule = rules.get(row.rule) if row.source != alerts.ALERTMANAGER else None
        value = format_value(row.value, rule.unit, rule.decimals) if rule else None
        since = row.firing_since if row.state == alerts.FIRING else row.pending_since
        listed.append(ListedAlert(rule=row.rule, state=row.state, level=row.level, value=value, since=since,
                                  labels=dict(row.labels or {}), error=row.error, acked_by=row.acked_by))
    return render_list(listed, silences)


def parse_silence(text: str | None) -> tuple[str, timedelta]:
    """`<rule> <duration>`; pure, so a typo is answered in the ack."""
    words = split_args(text)
    if len(words) < 2:
        raise InvalidInput("Usage: `/silence <rule> <duration>`, e.g. `/silence api_p95_latency 2h`.")
    name, raw = words[0], " ".join(words[1:])
    try:
        duration = parse_duration(raw)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    except OverflowError:  # beyond timedelta's range: certainly longer than the longest silence
        duration = timedelta.max
    if duration > MAX_SILENCE:
        raise InvalidInput(f"A silence lasts at most {format_duration(MAX_SILENCE)}.")
    return name, duration


async def silence_rule(deps: Deps, *, rule: str, duration: timedelta, user: str) -> str:
    labels = next((r.labels for r in deps.config.alerts.rules if r.name == rule), {})
    await deps.require(user=user, action="alert.silence", target=rule, environment=_environment(labels))
    until = await alerts.silence_rule(deps.db, clock=deps.clock, rule=rule, duration=duration, user=user,
                                      configured=(r.name for r in deps.config.alerts.rules))
    if until is None:
        return f"🔔 `{rule}` is no longer silenced."
    return f"🔕 `{rule}` silenced for {format_duration(duration)} (until {when(until)})."


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


# -- wiring -------------------------------------------------------------------------------------
def register(app: AsyncApp, deps: Deps) -> None:
    engine = engine_for(deps)
    for interval, rules in rules_by_interval(deps).items():
        async def evaluate(rules: list[AlertRule] = rules) -> None:
            await engine.evaluate(rules)

        deps.scheduler.every(eval_job_name(interval), interval, evaluate)

    async def housekeeping() -> None:
        await engine.housekeeping()

    deps.scheduler.every(HOUSEKEEPING_JOB, timedelta(minutes=1), housekeeping)

    def button(verb: Any, **extra: Any) -> Any:
        async def handler(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
            await ack()
            user = user_of(body)
            try:
                work = verb(deps, row_id=parse_id(action.get("value"), what="alert"), user=user, **extra)
            except InvalidInput as exc:  # a forged or altered button: told, nothing looked up
                work = refuse(exc)
            run_after_ack(deps, work, name=f"alerts.{verb.__name__}", user=user, channel=channel_of(body),
                          once=request_key(body))

        return handler

    app.action(Action.ACK)(button(acknowledge))
    for action_id, hours in SILENCE_BUTTONS.items():
        app.action(action_id)(button(silence, hours=hours))

    @app.action(Action.INCIDENT)
    async def open_incident(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        user = user_of(body)
        data = _incident_fields(action.get("value"))
        from commands.incident import open_declare_modal  # the incident family owns the modal

        # views.open needs the trigger within 3 s: urgent work skips the queue that lets acks go first.
        run_after_ack(deps, open_declare_modal(
            deps, trigger_id=body["trigger_id"], user_id=user, title=data.get("t"), description=data.get("d"),
            severity=data.get("s"), service=data.get("svc"), environment=data.get("env"),
            source_link=permalink(body) or data.get("l")), name="alerts.open_incident", user=user,
            channel=channel_of(body), urgent=True)

    @app.command("/alerts")
    async def alerts_command(ack: AsyncAck, respond: Any) -> None:
        metrics.count_command("alerts")
        await ack()

        async def answer() -> None:
            blocks = await list_alerts(deps)
            await respond(text="Alerts", blocks=blocks, response_type="ephemeral")

        run_after_ack(deps, answer(), name="alerts.list", respond=respond)

    @app.command("/silence")
    async def silence_command(ack: AsyncAck, body: dict[str, Any], command: dict[str, Any], respond: Any) -> None:
        metrics.count_command("silence")
        try:
            rule, duration = parse_silence(command.get("text"))
        except InvalidInput as exc:
            await ack(ephemeral(f":warning: {exc}"))
            return
        await ack()

        async def work() -> None:
            text = await silence_rule(deps, rule=rule, duration=duration, user=command["user_id"])
            await respond(text=text, response_type="ephemeral")

        run_after_ack(deps, work(), name="alerts.silence", respond=respond, once=request_key(body))


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
            changes = await engine_for(deps).alertmanager(payload)
        except ValueError as exc:
            return JSONResponse({"error": f"invalid payload: {exc}"}, status_code=400)
        return JSONResponse({"status": "ok", "alerts": len(payload.get("alerts") or []),
                             "changed": len(changes)})

    return [Route("/webhooks/alertmanager", alertmanager, methods=["POST"])]
