"""`/incident stats [30d|90d|<from>..<to>] [severity] [service]`: incident numbers and a weekly chart.

`commands/incident` hands the `stats` verb here (`is_stats`, `stats_command`); the ack checks the arguments
and the `insights.stats` job (jobs.py) reads the timeline, draws the chart and uploads it with the numbers
through Slack's upload flow (files.getUploadURLExternal → POST the bytes → files.completeUploadExternal)."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck

from bot import insights, metrics
from bot.deps import Deps
from bot.errors import OpsbotError
from commands.common import ack_deferred, ephemeral, error_text, split_args
from commands.router import Router

STATS_JOB = "insights.stats"
HELP = [("/incident stats [30d|90d|<from>..<to>] [severity] [service]",
         "Incident count, time to acknowledge and to resolve (median, p90) per severity, and a weekly chart")]


def is_stats(text: str | None) -> bool:
    words = split_args(text)
    return bool(words) and words[0].lower() == "stats"


async def stats_command(ack: AsyncAck, command: dict[str, Any], deps: Deps) -> None:
    """Validated in the ack (pure), computed and uploaded by the job."""
    metrics.count_command("incident.stats")
    words = split_args(command.get("text"))[1:]
    try:
        insights.parse_query(words, severities=[s.name for s in deps.config.severities], now=deps.clock())
    except OpsbotError as exc:
        await ack(ephemeral(error_text(exc)))
        return
    channel = command.get("channel_id")
    if not channel:
        await ack(ephemeral(":warning: Run `/incident stats` in a channel."))
        return
    await ack_deferred(ack, deps, STATS_JOB, answer=ephemeral("Computing incident stats…"),
                       user=command["user_id"], channel=channel, response_url=command.get("response_url"),
                       words=words)


def register(app: Router) -> None:
    """Nothing of its own to listen to: `/incident stats` reaches `stats_command` through commands/incident."""
