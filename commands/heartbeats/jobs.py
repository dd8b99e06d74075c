"""The heartbeats' named job: the late check, run every minute by the scheduler's leader."""

from __future__ import annotations

from bot.deps import Deps
from bot.heartbeats.flows import run_checks
from bot.jobs import job
from commands.alerts.notify import SlackAlerts
from commands.heartbeats import CHECK_JOB


@job(CHECK_JOB)
async def check(deps: Deps) -> None:
    """Fire the alerts of late heartbeats, then their due escalation levels (the next minute is the retry)."""
    await run_checks(deps, SlackAlerts(deps))
