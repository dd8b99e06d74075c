"""`insights.stats`: the numbers from the timeline, the chart (matplotlib, loaded here only) and its upload."""

from __future__ import annotations

import asyncio

from slack_sdk.errors import SlackApiError

from bot import insights
from bot.deps import Deps
from bot.errors import DependencyDown, InvalidInput
from bot.insights import chart
from bot.jobs import job
from commands.insights import STATS_JOB, render

FILENAME = "incident-stats.png"


async def upload_png(deps: Deps, *, channel: str, content: bytes, title: str, comment: str) -> str:
    """Slack's upload flow: an upload URL for the length, the bytes POSTed there, then the share. The file id."""
    ticket = await deps.slack.files_getUploadURLExternal(filename=FILENAME, length=len(content),
                                                         alt_txt=title[:1000])
    upload_url, file_id = str(ticket["upload_url"]), str(ticket["file_id"])
    response = await deps.http.post(upload_url, content=content, headers={"Content-Type": "image/png"})
    if response.status_code != 200:
        raise DependencyDown(f"Slack did not take the chart's upload (HTTP {response.status_code}).")
    try:
        await _complete(deps, file_id=file_id, channel=channel, title=title, comment=comment)
    except SlackApiError as exc:
        if exc.response.get("error") != "not_in_channel":
            raise
        await _join(deps, channel)  # a public channel opsbot is not in yet: join, then share
        await _complete(deps, file_id=file_id, channel=channel, title=title, comment=comment)
    return file_id


async def _complete(deps: Deps, *, file_id: str, channel: str, title: str, comment: str) -> None:
    await deps.slack.files_completeUploadExternal(files=[{"id": file_id, "title": title}], channel_id=channel,
                                                  initial_comment=comment)


async def _join(deps: Deps, channel: str) -> None:
    try:
        await deps.slack.conversations_join(channel=channel)
    except SlackApiError as exc:
        raise InvalidInput("opsbot is not in this channel: invite it (`/invite @opsbot`) and run "
                           "`/incident stats` again.") from exc


@job(STATS_JOB, retries=1)
async def stats(deps: Deps, *, user: str, channel: str, response_url: str | None, words: list[str]) -> None:
    query = insights.parse_query(words, severities=[s.name for s in deps.config.severities], now=deps.clock())
    samples = await insights.load(deps.db, query)
    report = insights.compute(samples, query, severity_order=[s.name for s in deps.config.severities])
    title = f"Incidents per week — {render.scope(report)}"
    content = await asyncio.to_thread(chart.render_png, report, title=title)  # CPU-bound: off the event loop
    await upload_png(deps, channel=channel, content=content, title=title, comment=render.stats_text(report))
