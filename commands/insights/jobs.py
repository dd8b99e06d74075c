"""`insights.stats`: the numbers from the timeline, the chart (matplotlib, loaded here only) and its upload."""

from __future__ import annotations

import asyncio

from bot import insights
from bot.deps import Deps
from bot.errors import DependencyDown
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
    await deps.slack.files_completeUploadExternal(files=[{"id": file_id, "title": title}], channel_id=channel,
                                                  initial_comment=comment)
    return file_id


@job(STATS_JOB, retries=1)
async def stats(deps: Deps, *, user: str, channel: str, response_url: str | None, words: list[str]) -> None:
    query = insights.parse_query(words, severities=[s.name for s in deps.config.severities], now=deps.clock())
    async with deps.db.session() as session:
        samples = await insights.load(session, query)
    report = insights.compute(samples, query, severity_order=[s.name for s in deps.config.severities])
    title = f"Incidents per week — {render.scope(report)}"
    content = await asyncio.to_thread(chart.render_png, report, title=title)  # CPU-bound: off the event loop
    await upload_png(deps, channel=channel, content=content, title=title, comment=render.stats_text(report))
