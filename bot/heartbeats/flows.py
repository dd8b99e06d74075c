"""Heartbeats end to end: a ping, the late check, and the escalation policies of heartbeats' alerts (through
bot/alerts/flows, so acknowledging or resolving one tells PagerDuty, Opsgenie and webhooks as for any alert)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from bot import metrics
from bot.alerts import active_silences, silenced_until
from bot.alerts import flows as alert_flows
from bot.alerts.flows import AlertNotifier
from bot.config.heartbeats import Heartbeat as HeartbeatConfig
from bot.heartbeats import Ping, check, firing_rows, ping

if TYPE_CHECKING:
    from bot.deps import Deps

log = logging.getLogger(__name__)


async def received(deps: Deps, notifier: AlertNotifier, heartbeat: HeartbeatConfig, *, status: str,
                   message: str | None) -> str:
    """A ping from the job; returns the alert's state afterwards (`firing` or `ok`)."""
    text = deps.scrubber(message)[:300] if message else None
    changes = await ping(alert_flows.engine_for(deps, notifier), heartbeat,
                         Ping(heartbeat.name, status, text, deps.clock()))
    return "firing" if status == "fail" else ("resolved" if changes else "ok")


async def run_checks(deps: Deps, notifier: AlertNotifier) -> list[str]:
    """The late check (every minute on the scheduler's leader), then due escalation levels."""
    late = await check(alert_flows.engine_for(deps, notifier), list(deps.config.heartbeats))
    await escalate(deps, notifier)
    return late


async def escalate(deps: Deps, notifier: AlertNotifier) -> int:
    """Due levels of heartbeats' escalation policies, for firing, unacknowledged, unsilenced alerts."""
    pager = notifier.pager
    configured = {h.name: h for h in deps.config.heartbeats if h.escalation_policy}
    if pager is None or not configured:
        return 0
    now = deps.clock()
    rows = await firing_rows(deps.db, list(configured))
    async with deps.db.session() as session:
        silences = await active_silences(session, now)
    fired = 0
    for row in rows:
        name = configured[row.rule].escalation_policy or ""
        policy = deps.config.escalation_policies.get(name)
        if policy is None or row.firing_since is None or silenced_until(row, silences.get(row.rule), now):
            continue
        try:
            fired += await alert_flows._escalate_one(deps, pager, notifier, row, name, policy, now)
        except Exception:  # one failing heartbeat must not stop the others
            metrics.BACKGROUND_FAILURES.labels(name="heartbeats.escalate").inc()
            log.exception("escalating heartbeat %s failed", row.rule)
    return fired
