"""The `/run` family's named jobs: request, confirm, cancel, approve, reject, execute."""

from __future__ import annotations

from typing import Any

from bot.actions import flows
from bot.deps import Deps
from bot.jobs import job
from commands.run.notify import SlackActions

EXPIRE_JOB = "actions.expire"


def _notifier(deps: Deps, user: str, channel: str | None, response_url: str | None) -> SlackActions:
    return SlackActions(deps, user=user, channel=channel, response_url=response_url)


@job("actions.request", retries=2)
async def request(deps: Deps, *, user: str, channel: str | None, response_url: str | None, action: str,
                  environment: str | None, params: dict[str, Any]) -> None:
    await flows.request(deps, _notifier(deps, user, channel, response_url), user=user, channel=channel,
                        action=action, environment=environment, params=params)


@job("actions.confirm", lock="action-run:{run_id}", retries=2)
async def confirm(deps: Deps, *, user: str, channel: str | None, response_url: str | None, run_id: int) -> None:
    await flows.confirm(deps, _notifier(deps, user, channel, response_url), run_id=run_id, user=user)


@job("actions.cancel", lock="action-run:{run_id}", retries=2)
async def cancel(deps: Deps, *, user: str, channel: str | None, response_url: str | None, run_id: int) -> None:
    await flows.cancel(deps, _notifier(deps, user, channel, response_url), run_id=run_id, user=user)


@job("actions.approve", lock="action-run:{run_id}", retries=2)
async def approve(deps: Deps, *, user: str, channel: str | None, response_url: str | None, run_id: int) -> None:
    await flows.approve(deps, _notifier(deps, user, channel, response_url), run_id=run_id, user=user)


@job("actions.reject", lock="action-run:{run_id}", retries=2)
async def reject(deps: Deps, *, user: str, channel: str | None, response_url: str | None, run_id: int) -> None:
    await flows.reject(deps, _notifier(deps, user, channel, response_url), run_id=run_id, user=user)


@job(flows.EXECUTE_JOB, lock="action-run:{run_id}")
async def execute(deps: Deps, *, run_id: int) -> None:
    await flows.execute(deps, _notifier(deps, "", None, None), run_id)


@job(EXPIRE_JOB)
async def expire(deps: Deps) -> None:
    await flows.expire(deps, _notifier(deps, "", None, None))
