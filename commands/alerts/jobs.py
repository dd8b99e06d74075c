"""The alert family's named jobs (bot/jobs.py): the scheduled cycles, and the work behind buttons and commands.

People's verbs on one alert run one at a time for it (`lock`), so two clicks are two decisions in a row: the
second sees the first's commit and is told who was first."""

from __future__ import annotations

from datetime import timedelta

from bot.alerts import ALERTMANAGER, FIRING, flows
from bot.deps import Deps
from bot.durations import format_duration
from bot.jobs import job
from commands.alerts import rules_by_interval
from commands.alerts.notify import SlackAlerts, engine
from commands.alerts.render import ListedAlert, format_value, render_list, when
from commands.common import responder, tell


@job("alerts.evaluate")
async def evaluate(deps: Deps, *, interval_seconds: float) -> None:
    """One evaluation cycle of the rules read every `interval_seconds` (the next tick is its retry)."""
    rules = rules_by_interval(deps).get(timedelta(seconds=interval_seconds), [])
    await engine(deps).evaluate(rules)


@job("alerts.housekeeping")
async def housekeeping(deps: Deps) -> None:
    """Escalation, auto-acknowledgement and reminders of firing alerts."""
    await engine(deps).housekeeping()


@job("alerts.acknowledge", lock="alert:{alert_id}", retries=2)
async def acknowledge(deps: Deps, *, user: str, channel: str | None, alert_id: int) -> None:
    await flows.acknowledge(deps, SlackAlerts(deps), alert_id=alert_id, user=user)


@job("alerts.silence", lock="alert:{alert_id}", retries=2)
async def silence(deps: Deps, *, user: str, channel: str | None, alert_id: int, hours: int) -> None:
    notifier = SlackAlerts(deps)
    row = await flows.silence(deps, notifier, alert_id=alert_id, user=user, duration=timedelta(hours=hours))
    if row.message_ts and row.channel:
        await notifier.post(channel=row.channel, thread_ts=row.message_ts,
                            text=f"🔕 Silenced for {hours}h by <@{user}>.")


@job("alerts.silence_rule", lock="silence:{rule}", retries=2)
async def silence_rule(deps: Deps, *, user: str, channel: str | None, response_url: str | None, rule: str,
                       seconds: float) -> None:
    duration = timedelta(seconds=seconds)
    until = await flows.silence_rule(deps, rule=rule, duration=duration, user=user)
    text = (f"🔔 `{rule}` is no longer silenced." if until is None
            else f"🔕 `{rule}` silenced for {format_duration(duration)} (until {when(until)}).")
    await tell(deps, text=text, respond=responder(deps, response_url), user=user, channel=channel)


@job("alerts.list", retries=2)
async def list_alerts(deps: Deps, *, user: str, channel: str | None, response_url: str | None) -> None:
    rows, silences = await flows.overview(deps.db, clock=deps.clock)
    rules = {r.name: r for r in deps.config.alerts.rules}
    listed = []
    for row in rows:
        rule = rules.get(row.rule) if row.source != ALERTMANAGER else None
        value = format_value(row.value, rule.unit, rule.decimals) if rule else None
        since = row.firing_since if row.state == FIRING else row.pending_since
        listed.append(ListedAlert(rule=row.rule, state=row.state, level=row.level, value=value, since=since,
                                  labels=dict(row.labels or {}), error=row.error, acked_by=row.acked_by))
    await tell(deps, text="Alerts", blocks=render_list(listed, silences), respond=responder(deps, response_url),
               user=user, channel=channel)
