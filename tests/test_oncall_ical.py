"""Schedules read from iCal feeds (bot/oncall/ical.py): recurrence, exceptions, edits and time zones, and
the feed fetched from a real local HTTP server with ETag/304, kept while its host is down."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot.clock import FakeClock
from bot.config.oncall import IcalFeed
from bot.db import Database
from bot.emulator.localserver import LocalServer
from bot.models import OncallFeed
from bot.oncall import current, ical
from bot.oncall.ical import FeedError, parse_shifts
from tests.conftest import closed_port, load_test_config

BERLIN = ZoneInfo("Europe/Berlin")
SECRET_PATH = "/private/s3cr3tT0ken/feed"
VTIMEZONE = """BEGIN:VTIMEZONE
TZID:Europe/Berlin
BEGIN:DAYLIGHT
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
TZNAME:CEST
DTSTART:19700329T020000
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU
END:DAYLIGHT
BEGIN:STANDARD
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
TZNAME:CET
DTSTART:19701025T030000
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU
END:STANDARD
END:VTIMEZONE
"""
# A PagerDuty-like export: alice and bob alternate weeks (each a weekly RRULE with INTERVAL=2) handing off
# Mondays 09:00 Berlin; alice's 2 Feb week is cancelled (EXDATE) and her 19 Jan week edited to carol
# (RECURRENCE-ID); bob's rule is in UTC with a DURATION; an all-day holiday cover and a cancelled event.
FEED = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//PagerDuty Inc.//PagerDuty Calendar Export//EN\r\n"
        "X-WR-CALNAME:Primary\r\n" + VTIMEZONE.replace("\n", "\r\n") + """BEGIN:VEVENT
UID:Q1ALICE-primary@pagerduty.com
DTSTAMP:20260101T000000Z
DTSTART;TZID=Europe/Berlin:20260105T090000
DTEND;TZID=Europe/Berlin:20260112T090000
RRULE:FREQ=WEEKLY;INTERVAL=2
EXDATE;TZID=Europe/Berlin:20260202T090000
SUMMARY:On Call - Alice Archer - Primary
ATTENDEE;CN=Alice Archer:mailto:alice.archer@corp.example
END:VEVENT
BEGIN:VEVENT
UID:Q1ALICE-primary@pagerduty.com
DTSTAMP:20260101T000000Z
RECURRENCE-ID;TZID=Europe/Berlin:20260119T090000
DTSTART;TZID=Europe/Berlin:20260119T090000
DTEND;TZID=Europe/Berlin:20260126T090000
SUMMARY:On Call - Carol Chen - Primary
ATTENDEE;CN=Carol Chen:mailto:carol@example.com
END:VEVENT
BEGIN:VEVENT
UID:Q2BOB-primary@pagerduty.com
DTSTAMP:20260101T000000Z
DTSTART:20260112T080000Z
DURATION:P7D
RRULE:FREQ=WEEKLY;INTERVAL=2;COUNT=10
SUMMARY:On Call - Bob Baker - Primary
ORGANIZER:mailto:bob@example.com
END:VEVENT
BEGIN:VEVENT
UID:holiday-cover@corp.example
DTSTAMP:20260101T000000Z
DTSTART;VALUE=DATE:20260401
DTEND;VALUE=DATE:20260402
SUMMARY:Holiday cover
ATTENDEE:mailto:dana@corp.example
END:VEVENT
BEGIN:VEVENT
UID:cancelled@corp.example
DTSTAMP:20260101T000000Z
DTSTART:20260106T120000
DTEND:20260106T130000
STATUS:CANCELLED
SUMMARY:Zed
ATTENDEE:mailto:zed@corp.example
END:VEVENT
BEGIN:VEVENT
UID:floating@corp.example
DTSTAMP:20260101T000000Z
DTSTART:20260106T120000
DTEND:20260106T130000
SUMMARY:Lunch cover
END:VEVENT
END:VCALENDAR
""").replace("\r\n", "\n").replace("\n", "\r\n")
PEOPLE = {"Alice Archer": "U0ALICE01", "Lunch cover": "@bob", "dana@corp.example": "U0CAROL01"}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def parsed(start: datetime, end: datetime, people: dict[str, str] | None = None) -> list[tuple[str, datetime,
                                                                                                 datetime]]:
    found = parse_shifts(FEED, start=start, end=end, zone=BERLIN, people=PEOPLE if people is None else people)
    return [(s.user, s.start, s.end) for s in found]


def test_a_biweekly_rrule_with_an_exdate_and_an_edited_occurrence() -> None:
    found = [(u, s) for u, s, _ in parsed(utc(2026, 1, 1), utc(2026, 2, 20)) if s.hour in (7, 8)]
    assert found == [
        ("U0ALICE01", utc(2026, 1, 5, 8)),  # 09:00 CET; "Alice Archer" found inside the PagerDuty summary
        ("bob@example.com", utc(2026, 1, 12, 8)),  # ORGANIZER: looked up in Slack later
        ("carol@example.com", utc(2026, 1, 19, 8)),  # RECURRENCE-ID: alice's week edited to carol
        ("bob@example.com", utc(2026, 1, 26, 8)),
        # 2 Feb: EXDATE, nobody
        ("bob@example.com", utc(2026, 2, 9, 8)),
        ("U0ALICE01", utc(2026, 2, 16, 8)),
    ]


def test_tzid_events_follow_berlin_summer_time_and_utc_events_do_not() -> None:
    found = parsed(utc(2026, 3, 28), utc(2026, 4, 3))
    assert ("U0ALICE01", utc(2026, 3, 30, 7), utc(2026, 4, 6, 7)) in found  # 09:00 CEST
    assert ("bob@example.com", utc(2026, 3, 23, 8), utc(2026, 3, 30, 8)) in found  # UTC: still 08:00
    # All-day: the Berlin day, mapped by its attendee's address.
    assert ("U0CAROL01", utc(2026, 3, 31, 22), utc(2026, 4, 1, 22)) in found


def test_floating_times_are_in_the_schedule_zone_and_cancelled_events_are_skipped() -> None:
    found = parsed(utc(2026, 1, 6), utc(2026, 1, 7))
    assert ("@bob", utc(2026, 1, 6, 11), utc(2026, 1, 6, 12)) in found  # 12:00 floating = 12:00 Berlin
    assert [user for user, start, _ in found if start == utc(2026, 1, 6, 11)] == ["@bob"]  # not zed: cancelled


def test_people_map_by_exact_summary_then_address_then_substring_then_the_address() -> None:
    found = parsed(utc(2026, 1, 5), utc(2026, 1, 6), people={"alice.archer@corp.example": "U0ALICE01",
                                                              "Alice": "U0WRONG01"})
    assert found[0][0] == "U0ALICE01"  # an attendee's address wins over a substring of the summary
    found = parsed(utc(2026, 1, 5), utc(2026, 1, 6), people={})
    assert found[0][0] == "alice.archer@corp.example"


def test_a_rule_ending_with_count_stops() -> None:
    bobs = [s for u, s, _ in parsed(utc(2026, 1, 1), utc(2027, 1, 1)) if u == "bob@example.com"]
    assert len(bobs) == 10 and bobs[-1] == utc(2026, 5, 18, 8)


@pytest.mark.parametrize("body", ["not a calendar", "BEGIN:VEVENT\r\nEND:VEVENT\r\n"])
def test_a_body_that_is_not_a_calendar_is_a_feed_error(body: str) -> None:
    with pytest.raises(FeedError):
        parse_shifts(body, start=utc(2026, 1, 1), end=utc(2026, 2, 1), zone=BERLIN, people={})


# -- fetched over HTTP -------------------------------------------------------------------------------

@dataclass
class FeedHost:
    body: str = FEED
    etag: str = '"v1"'
    status: int = 200
    seen: list[str | None] = field(default_factory=list)  # If-None-Match of each request

    async def serve(self, request: Request) -> Response:
        self.seen.append(request.headers.get("if-none-match"))
        if self.status != 200:
            return Response("unavailable", status_code=self.status)
        if request.headers.get("if-none-match") == self.etag:
            return Response(status_code=304, headers={"ETag": self.etag})
        return Response(self.body, media_type="text/calendar", headers={"ETag": self.etag})


@pytest.fixture
async def host() -> AsyncIterator[tuple[FeedHost, LocalServer]]:
    feed = FeedHost()
    async with LocalServer(Starlette(routes=[Route(SECRET_PATH, feed.serve)])) as server:
        yield feed, server


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    yield database
    await database.dispose()



async def test_refresh_stores_the_feed_then_asks_with_its_etag_and_gets_304(
        db: Database, host: tuple[FeedHost, LocalServer], clock: FakeClock) -> None:
    feed, server = host
    config = IcalFeed.model_validate({"url": server.url + SECRET_PATH})
    async with httpx.AsyncClient() as http:
        first = await ical.refresh(db, http, clock, schedule="pd", feed=config)
        assert first.body == FEED and first.error is None and first.fetched_at == clock()
        clock.advance(minutes=15)
        second = await ical.refresh(db, http, clock, schedule="pd", feed=config)
        assert second.body == FEED and second.fetched_at == clock()  # a 304 confirms the copy
        feed.body, feed.etag = FEED.replace("Alice Archer - Primary", "Alice Archer - Primary (v2)"), '"v2"'
        third = await ical.refresh(db, http, clock, schedule="pd", feed=config)
    assert feed.seen == [None, '"v1"', '"v1"']
    assert "(v2)" in third.body
    async with db.session() as session:
        row = await session.get(OncallFeed, "pd")
        assert row is not None and row.etag == '"v2"'


async def test_a_failed_refresh_keeps_the_last_good_copy_and_records_why_without_the_url(
        db: Database, host: tuple[FeedHost, LocalServer], clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    feed, server = host
    config = IcalFeed.model_validate({"url": server.url + SECRET_PATH})
    async with httpx.AsyncClient() as http:
        await ical.refresh(db, http, clock, schedule="pd", feed=config)
        good_at = clock()
        clock.advance(minutes=15)
        feed.status = 503
        state = await ical.refresh(db, http, clock, schedule="pd", feed=config)
        assert (state.body, state.fetched_at, state.error) == (FEED, good_at, "the feed answered HTTP 503")
        feed.status, feed.body, feed.etag = 200, "<html>login</html>", '"bad"'
        state = await ical.refresh(db, http, clock, schedule="pd", feed=config)
        assert state.body == FEED and state.error == "the feed is not valid iCalendar"
        down = IcalFeed.model_validate({"url": f"http://127.0.0.1:{closed_port()}{SECRET_PATH}"})
        state = await ical.refresh(db, http, clock, schedule="pd", feed=down)
        assert state.body == FEED and state.error == "the feed could not be fetched (ConnectError)"
        assert state.stale(clock(), config.refresh)
        big = "BEGIN:VCALENDAR\r\n" + "X-FILLER:" + "x" * 2000 + "\r\n"
        feed.body, feed.etag = big * 10, '"big"'
        state = await ical.refresh(db, http, clock, schedule="pd", feed=config, max_bytes=8 * 1024)
        assert state.body == FEED and state.error == "the feed is larger than 8 KiB"
        feed.body, feed.etag = FEED, '"v1"'
        state = await ical.refresh(db, http, clock, schedule="pd", feed=config)
        assert state.error is None and not state.stale(clock(), config.refresh)
    assert "s3cr3tT0ken" not in caplog.text and "the feed answered HTTP 503" in caplog.text


def _pd_config(url: str) -> Any:
    return load_test_config({"oncall": {"pd": {
        "description": "PagerDuty primary", "time_zone": "Europe/Berlin",
        "ical": {"url": url, "refresh": "5m", "people": {"Alice Archer": "U0ALICE01"}}}}})


async def test_oncall_reads_the_feed_resolves_addresses_and_shows_a_stale_feed(
        make_bot: Any, host: tuple[FeedHost, LocalServer], clock: FakeClock) -> None:
    feed, server = host
    bot = await make_bot(config=_pd_config(server.url + SECRET_PATH))
    await bot.command("/oncall", "pd")  # never read: the job reads it first
    text = bot.ephemeral_texts()[-1]
    assert "*pd* — PagerDuty primary" in text and "*Now:* <@U0ALICE01> until" in text
    assert "*Next:* <@U0BOB0001> from" in text  # bob@example.com, found by users.lookupByEmail
    assert "stale" not in text
    clock.advance(days=7, hours=1)
    assert await current(bot.deps.db, bot.deps.config, clock, "pd", resolve=None) == []  # an address needs a resolver

    feed.status = 503
    await bot.run_job("oncall.feed.pd")
    await bot.command("/oncall")
    text = bot.ephemeral_texts()[-1]
    assert "*Now:* <@U0BOB0001>" in text  # from the last good copy
    assert "The iCal feed is stale (last good copy from <!date^" in text
    assert "the last refresh failed: the feed answered HTTP 503" in text
    assert all("s3cr3tT0ken" not in t for t in bot.ephemeral_texts())
    feed.status = 200
    await bot.run_job("oncall.feed.pd")
    await bot.command("/oncall", "pd")
    assert "stale" not in bot.ephemeral_texts()[-1]
    assert feed.seen[-1] == '"v1"'


async def test_a_feed_never_read_says_why(make_bot: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    bot = await make_bot(config=_pd_config(f"http://127.0.0.1:{closed_port()}{SECRET_PATH}"))
    await bot.command("/oncall", "pd")
    text = bot.ephemeral_texts()[-1]
    assert "*Now:* nobody" in text
    assert "The iCal feed has not been read yet: the feed could not be fetched (ConnectError)." in text
    assert "s3cr3tT0ken" not in text and "s3cr3tT0ken" not in caplog.text


async def test_the_scheduled_check_fetches_only_when_due(make_bot: Any, host: tuple[FeedHost, LocalServer],
                                                         clock: FakeClock) -> None:
    feed, server = host
    bot = await make_bot(config=_pd_config(server.url + SECRET_PATH))  # refresh: 5m
    await bot.run_job("oncall.feed.pd")  # never read: fetched at once
    await bot.run_job("oncall.feed.pd")
    assert feed.seen == [None]
    clock.advance(minutes=5)
    await bot.run_job("oncall.feed.pd")
    assert feed.seen == [None, '"v1"']
    feed.status = 500
    clock.advance(minutes=5)
    await bot.run_job("oncall.feed.pd")
    await bot.run_job("oncall.feed.pd")  # after a failure: tried again at the next check
    assert len(feed.seen) == 4
