"""`home.publish` (a user opened Home) and `home.refresh` (republish changed Homes, debounced)."""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError

from bot import home
from bot.deps import Deps
from bot.jobs import job
from commands.home import PUBLISH_JOB, REFRESH_JOB
from commands.home.render import digest, home_view

log = logging.getLogger(__name__)


async def _publish(deps: Deps, user: str, *, opened: bool) -> bool:
    """Build the user's Home; publish it when it is due. True when it was published."""
    view = home_view(await home.gather(deps.db, config=deps.config, clock=deps.clock, user=user))
    shown = digest(view)
    last = await home.last_published(deps.db, user=user)
    # Opening Home shows it at once when anything changed; a refresh waits out the debounce too.
    if not (last is None or last[1] != shown if opened else home.due(last, digest=shown, now=deps.clock())):
        return False
    await deps.slack.views_publish(user_id=user, view=view)
    await home.published(deps.db, clock=deps.clock, user=user, digest=shown)
    return True


@job(PUBLISH_JOB, retries=2)
async def publish(deps: Deps, *, user: str) -> None:
    await home.opened(deps.db, clock=deps.clock, user=user)
    await _publish(deps, user, opened=True)


@job(REFRESH_JOB)
async def refresh(deps: Deps) -> None:
    """Every viewer's Home that changed; one failing user is logged and the rest go on."""
    published = 0
    for user in await home.viewers(deps.db, clock=deps.clock):
        try:
            published += await _publish(deps, user, opened=False)
        except SlackApiError as exc:
            log.warning("home: publishing failed (%s)", exc.response.get("error", "error"))
    if published:
        log.info("home: republished %d Home view(s)", published)
