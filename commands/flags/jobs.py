"""The flag family's named jobs (bot/jobs.py) and the Slack side of a flag change (`SlackFlagNotifier`)."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import ClientError
from slack_sdk.errors import SlackApiError

from bot import flags
from bot.deps import Deps
from bot.flags import FlagChange, Outcome
from bot.jobs import job
from commands import blocks as bk
from commands.common import responder, tell
from commands.flags import render

log = logging.getLogger(__name__)
# One confirmation at a time: two presses on it (two people, a double click) run one after the other.
PROPOSAL_LOCK = "flag-proposal:{token}"


class SlackFlagNotifier:
    """bot.flags.FlagNotifier over Slack: the change posted to the ops channel (and the incident's)."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def announce(self, outcome: Outcome) -> list[str]:
        problems = [await self._post(self.deps.config.channels.ops_channel, outcome)]
        if outcome.incident_id is not None and outcome.channel:
            problems.append(await self._post(outcome.channel, outcome))
        return [p for p in problems if p]

    async def _post(self, channel: str, outcome: Outcome) -> str | None:
        """Post the change; a Slack failure after the flip is reported, never mistaken for a failed flip."""
        try:
            await self.deps.slack.chat_postMessage(channel=channel, text=render.outcome_text(outcome),
                                                   blocks=render.outcome(outcome))
            return None
        except (SlackApiError, TimeoutError, ClientError) as exc:  # refused, or timed out / unreachable
            error = exc.response.get("error", "error") if isinstance(exc, SlackApiError) else type(exc).__name__
            log.warning("posting a flag change to %s failed: %s", channel, error)
            return f"Posting to {channel} failed ({error})."


async def _answer(deps: Deps, response_url: str | None, user: str, channel: str | None, *, text: str,
                  blocks: list[dict[str, Any]] | None = None) -> None:
    """Replace the ephemeral message the command or button came from (else tell the user)."""
    respond = responder(deps, response_url)
    if respond is not None:
        await respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=True)
    else:
        await tell(deps, text=text, blocks=blocks, user=user, channel=channel)


@job("flags.propose", retries=2)
async def propose(deps: Deps, *, user: str, channel: str | None, response_url: str | None, action: str, flag: str,
                  environment: str, change: dict[str, Any], requested_at: float | None = None) -> None:
    """/killswitch and /flag after the ack: read the flag live, store the confirmation, show its buttons."""
    target = flags.resolve(deps.config, flag, environment)
    proposal = await flags.request_change(deps, actor=user, action=action, target=target,
                                          change=FlagChange.from_dict(change), channel=channel,
                                          asked_at=requested_at)
    await _answer(deps, response_url, user, channel,
                  text=f"{render.title(action, proposal.change)}? `{target.flag}` in {target.environment}",
                  blocks=render.confirmation(proposal, production=deps.config.is_production(target.environment)))


@job("flags.list", retries=2)
async def list_flags(deps: Deps, *, user: str, channel: str | None, response_url: str | None,
                     environment: str | None, requested_at: float | None = None) -> None:
    rows = await flags.read_all(deps, environment=environment, asked_at=requested_at)
    await _answer(deps, response_url, user, channel, text=f"Feature flags ({len(rows)})",
                  blocks=render.states_table(rows, environment))


@job("flags.confirm", lock=PROPOSAL_LOCK, retries=2)
async def confirm(deps: Deps, *, user: str, channel: str | None, response_url: str | None, token: str,
                  request: str | None) -> None:
    confirmed = await flags.confirm(deps, SlackFlagNotifier(deps), token=token, user=user, request=request)
    outcome, problems = confirmed.outcome, confirmed.problems
    blocks = render.outcome(outcome) + ([bk.context(" ".join(problems))] if problems else [])
    await _answer(deps, response_url, user, channel, text=render.outcome_text(outcome), blocks=blocks)


@job("flags.cancel", lock=PROPOSAL_LOCK, retries=2)
async def cancel(deps: Deps, *, user: str, channel: str | None, response_url: str | None, token: str,
                 request: str | None) -> None:
    target = await flags.cancel(deps, token=token, user=user, request=request)
    await _answer(deps, response_url, user, channel,
                  text=f"Cancelled: `{target.flag}` in {target.environment} was not changed.")
