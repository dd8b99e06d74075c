"""`/incident`: declare, update, escalate and resolve incidents (issue 4).

Listeners live in `handlers.py`, the named jobs they enqueue in `jobs.py`, the Slack side of the flows
(bot/incidents/flows.py) in `notify.py`. This module is what other features import:
`from commands.incident import open_declare_modal`."""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING

from commands.incident import modals
from commands.incident.render import HELP

if TYPE_CHECKING:

    from bot.deps import Deps
    from commands.router import Router

__all__ = ["HELP", "open_declare_modal", "register", "schedule"]
TIMERS_JOB = "incidents.timers"  # the scheduled job's name, and the named job it runs (jobs.timers)
TIMERS_EVERY = timedelta(seconds=30)


async def open_declare_modal(deps: Deps, *, trigger_id: str, user_id: str, title: str | None = None,
                             description: str | None = None, severity: str | None = None,
                             service: str | None = None, environment: str | None = None,
                             source_link: str | None = None) -> None:
    """Open the "Declare incident" modal, pre-filled; submitting it declares like `/incident open`.

    Call it right after your ack with the request's fresh trigger_id (trigger ids live 3 s). An unknown
    `severity` leaves the select empty; the commander defaults to `user_id`."""
    view = modals.declare_modal(deps.config, user_id=user_id, title=title, description=description,
                                severity=severity, service=service, environment=environment,
                                source_link=source_link)
    await deps.slack.views_open(trigger_id=trigger_id, view=view)


def register(app: Router) -> None:
    from commands.incident import handlers

    handlers.register(app)


def schedule(deps: Deps) -> None:
    deps.scheduler.every(TIMERS_JOB, TIMERS_EVERY, partial(deps.run_job, TIMERS_JOB))
