"""Paging (issue 16): escalation policies' timer, one job per page, PagerDuty's webhooks and `/page`."""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from bot.deps import Deps

__all__ = ["schedule"]
ESCALATE_JOB = "paging.escalate"
ESCALATE_EVERY = timedelta(seconds=30)


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
