"""App Home: `app_home_opened` → `views.publish` of the user's Home (open incidents with their age,
commander and your roles; firing alerts; engaged kill switches; rollbacks waiting for your approval; who is
on call), with the buttons that act where the item lives (the incident's and the alert's Acknowledge, the
rollback's Approve: the same action ids as on their messages).

Kept fresh by `home.refresh` every 10 s (the scheduler's leader): for each user who opened Home lately, the
view is rebuilt and republished only when it changed, at most once per user per 10 s (bot/home.py) — well
inside views.publish's rate limit. Needs the `app_home_opened` event and the Home tab enabled."""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from commands.common import defer, request_key

if TYPE_CHECKING:
    from bot.deps import Deps
    from commands.router import Router

PUBLISH_JOB = "home.publish"
REFRESH_JOB = "home.refresh"
REFRESH_EVERY = timedelta(seconds=10)


async def home_opened(event: dict[str, Any], body: dict[str, Any], deps: Deps) -> None:
    """The Home tab (not the Messages tab) was opened: publish it, once per event_id."""
    user = event.get("user")
    if event.get("tab", "home") != "home" or not isinstance(user, str) or not user:
        return
    await defer(deps, PUBLISH_JOB, once=request_key(body), user=user)


def register(app: Router) -> None:
    app.event("app_home_opened")(home_opened)


def schedule(deps: Deps) -> None:
    deps.scheduler.every(REFRESH_JOB, REFRESH_EVERY, partial(deps.run_job, REFRESH_JOB))
