"""`/incident stats`: numbers from a FakeClock-built timeline, and the chart uploaded through Slack's
three-step flow, decoded as a PNG of the expected size."""

from __future__ import annotations

import struct
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot import incidents, insights
from bot.clock import FakeClock
from bot.emulator.harness import BotHarness
from bot.errors import InvalidInput
from bot.incidents import Declaration
from bot.insights import Query, Sample, Window, chart

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


async def _incident(bot: BotHarness, clock: FakeClock, *, severity: str, service: str, tta: int,
                    ttr: int | None) -> int:
    """One incident declared now, acknowledged `tta` minutes later, resolved `ttr` minutes after declaring."""
    start = clock.now
    async with bot.deps.db.session() as session:
        incident, _ = await incidents.declare(session, config=bot.deps.config, clock=clock, dedup_key=None,
                                              request=Declaration(title=f"{service} broken", severity=severity,
                                                                  reporter_id="U0ALICE01", service=service))
        number = incident.id
    clock.now = start + timedelta(minutes=tta)

    async def ack(session: Any, row: Any) -> None:
        await incidents.acknowledge(session, clock=clock, incident=row, actor="U0BOB0001")

    await incidents.apply(bot.deps.db, incident_id=number, mutate=ack)
    if ttr is not None:
        clock.now = start + timedelta(minutes=ttr)

        async def resolve(session: Any, row: Any) -> None:
            await incidents.resolve(session, clock=clock, incident=row, actor="U0BOB0001", summary="fixed")

        await incidents.apply(bot.deps.db, incident_id=number, mutate=resolve)
    clock.now = start + timedelta(days=1)
    return number


async def _history(bot: BotHarness, clock: FakeClock) -> None:
    """Five P1s (MTTA 2/4/6/10/30 min, MTTR 30/60/90/120/600 min) and two P2s (one still open)."""
    for tta, ttr, service in ((2, 30, "api"), (4, 60, "api"), (6, 90, "web"), (10, 120, "api"), (30, 600, "web")):
        await _incident(bot, clock, severity="P1", service=service, tta=tta, ttr=ttr)
    await _incident(bot, clock, severity="P2", service="api", tta=10, ttr=240)
    await _incident(bot, clock, severity="P2", service="web", tta=20, ttr=None)


def _png_size(content: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, after checking the signature and the chunk's CRC."""
    assert content[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", content[8:16])
    assert kind == b"IHDR" and length == 13
    data = content[16:29]
    (crc,) = struct.unpack(">I", content[29:33])
    assert zlib.crc32(kind + data) == crc
    width, height = struct.unpack(">II", data[:8])
    return width, height


def test_percentiles_are_nearest_rank_and_median_is_the_middle() -> None:
    assert insights.percentile([5.0, 1.0, 3.0, 2.0, 4.0], 0.9) == 5.0
    assert insights.percentile(list(map(float, range(1, 11))), 0.9) == 9.0
    assert insights.spread([10.0, 20.0]).median == 15.0
    assert insights.spread([]).median is None


def test_periods_and_filters_parse() -> None:
    now = datetime(2026, 3, 10, 12, tzinfo=UTC)
    query = insights.parse_query(["90d", "p1", "checkout"], severities=["P1", "P2"], now=now)
    assert (query.severity, query.service, query.window.start) == ("P1", "checkout", now - timedelta(days=90))
    span = insights.parse_window("2026-01-01..2026-01-31", now)
    assert (span.start, span.end) == (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))
    for bad in ("2026-02-01..2026-01-01", "0d", "yesterday..today"):
        with pytest.raises(InvalidInput):
            insights.parse_window(bad, now)


def test_weeks_without_incidents_count_zero() -> None:
    window = Window(datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 26, tzinfo=UTC), "3 weeks")
    at = datetime(2026, 1, 14, 10, tzinfo=UTC)
    sample = Sample(1, "P1", None, at, at + timedelta(minutes=5), at + timedelta(hours=2))
    report = insights.compute([sample], Query(window), severity_order=["P1"])
    assert [(w.start.isoformat(), w.count, w.mttr_median) for w in report.weeks] == [
        ("2026-01-05", 0, None), ("2026-01-12", 1, 7200.0), ("2026-01-19", 0, None)]
    png = chart.render_png(report, title="test")
    assert _png_size(png) == (chart.WIDTH_PX, chart.HEIGHT_PX)


async def test_stats_numbers_per_severity_from_the_timeline(bot: BotHarness, clock: FakeClock) -> None:
    await _history(bot, clock)
    query = insights.parse_query(["30d"], severities=["P1", "P2", "P3", "P4"], now=clock())
    samples = await insights.load(bot.deps.db, query)
    report = insights.compute(samples, query, severity_order=["P1", "P2", "P3", "P4"])
    p1, p2 = report.by_severity
    assert (p1.severity, p1.count, p1.open) == ("P1", 5, 0)
    assert (p1.mtta.median, p1.mtta.p90) == (6 * 60, 30 * 60)
    assert (p1.mttr.median, p1.mttr.p90) == (90 * 60, 600 * 60)
    assert (p2.count, p2.open, p2.mtta.median, p2.mtta.p90) == (2, 1, 15 * 60, 20 * 60)
    assert (p2.mttr.count, p2.mttr.median) == (1, 240 * 60)
    api = insights.compute(samples, insights.parse_query(["P1", "api"], severities=["P1", "P2"], now=clock()),
                           severity_order=["P1", "P2"])
    assert api.total == 3 and api.by_severity[0].mttr.median == 60 * 60


async def test_stats_command_uploads_the_chart_in_three_calls(bot: BotHarness, clock: FakeClock) -> None:
    await _history(bot, clock)
    response = await bot.command("/incident", "stats 30d", channel="ops")
    assert response.status_code == 200 and "Computing incident stats" in response.text
    methods = [m for m, _ in bot.slack.calls if m.startswith("files.")]
    assert methods == ["files.getUploadURLExternal", "files.completeUploadExternal"]
    (_, asked), = [c for c in bot.slack.calls if c[0] == "files.getUploadURLExternal"]
    (_, completed), = [c for c in bot.slack.calls if c[0] == "files.completeUploadExternal"]
    (stored,) = bot.slack.files.values()
    content = stored["content"]
    assert content is not None and int(asked["length"]) == len(content)  # the POST carried every byte
    assert _png_size(content) == (chart.WIDTH_PX, chart.HEIGHT_PX)
    assert completed["channel_id"] == bot.slack.channel("ops").id
    (shared,) = [m for m in bot.messages("ops") if m.files]
    assert shared.files[0]["id"] == stored["id"] and shared.files[0]["mimetype"] == "image/png"
    assert "7 incident(s)" in shared.text
    assert "*P1*: 5 — MTTA 6m (p90 30m), MTTR 1h 30m (p90 10h)" in shared.text
    assert "*P2*: 2, 1 open — MTTA 15m (p90 20m), MTTR 4h (p90 4h)" in shared.text


async def test_stats_refuses_a_bad_period_in_the_ack(bot: BotHarness) -> None:
    response = await bot.command("/incident", "stats 2026-02-01..2026-01-01", channel="ops")
    assert "ends before it starts" in response.text
    assert not [m for m, _ in bot.slack.calls if m.startswith("files.")]


async def test_the_postmortem_states_time_to_acknowledge_and_to_resolve(bot: BotHarness, clock: FakeClock) -> None:
    number = await _incident(bot, clock, severity="P2", service="api", tta=7, ttr=95)
    async with bot.deps.db.session() as session:
        incident = await incidents.get(session, incident_id=number)
        timeline = await incidents.events(session, incident_id=number)
        text = incidents.postmortem(bot.deps.config, incident, timeline)
    assert "**Time to acknowledge:** 7m" in text
    assert "**Time to resolve:** 1h 35m" in text


async def test_stats_in_a_channel_opsbot_is_not_in_joins_it_then_shares(bot: BotHarness) -> None:
    channel = bot.slack.add_channel("leads")
    channel.members.discard("U0BOT0001")
    await bot.command("/incident", "stats 90d", channel="leads")
    (shared,) = [m for m in bot.messages("leads") if m.files]
    assert "0 incident(s)" in shared.text and "No incidents were declared" in shared.text
    assert "conversations.join" in [m for m, _ in bot.slack.calls]
    assert _png_size(next(iter(bot.slack.files.values()))["content"]) == (chart.WIDTH_PX, chart.HEIGHT_PX)
