"""A schedule read from an iCalendar feed (PagerDuty, Opsgenie and calendar exports publish one).

Parsing is pure (`parse_shifts`): icalendar reads the feed, recurring_ical_events expands RRULE, RDATE,
EXDATE and edited occurrences (RECURRENCE-ID) with their time zones (TZID with a VTIMEZONE, UTC, floating
times and all-day dates in the schedule's zone). Fetching (`refresh`) goes through the shared httpx client
with If-None-Match; the last good copy lives in `oncall_feeds`, shared by replicas and kept while the
feed's host is down. The feed's URL is a secret: it is never logged, stored or shown."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from bot.clock import Clock, as_utc
from bot.config.oncall import IcalFeed
from bot.db import Database
from bot.errors import ConfigError
from bot.models import OncallFeed
from bot.oncall.rotation import Shift

if TYPE_CHECKING:
    import icalendar

log = logging.getLogger(__name__)
MAX_BYTES = 5 * 1024 * 1024
LAYER = "ical"
_MAILTO = re.compile(r"^mailto:", re.IGNORECASE)


class FeedError(Exception):
    """A feed that could not be read; the message is safe to show (it never holds the URL)."""


# -- parsing (pure) -------------------------------------------------------------------------------

def parse_calendar(body: str) -> icalendar.Calendar:
    import icalendar  # here, not at import: only replicas that read a feed pay for it (80 modules)

    try:
        calendar = icalendar.Calendar.from_ical(body)
    except ValueError as exc:
        raise FeedError("the feed is not valid iCalendar") from exc
    if not isinstance(calendar, icalendar.Calendar) or calendar.name != "VCALENDAR":
        raise FeedError("the feed is not an iCalendar VCALENDAR")
    return calendar


def _aware(value: date | datetime, zone: ZoneInfo) -> datetime:
    """An event time as aware UTC: a date is midnight and a floating time wall-clock time in `zone`."""
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)


def _addresses(event: Any) -> list[str]:
    """The e-mail addresses of an event's attendees, then its organizer."""
    raw = event.get("ATTENDEE")
    values = list(raw) if isinstance(raw, list) else ([raw] if raw is not None else [])
    if event.get("ORGANIZER") is not None:
        values.append(event.get("ORGANIZER"))
    return [_MAILTO.sub("", str(v)).strip() for v in values if _MAILTO.match(str(v)) and "@" in str(v)]


def person(event: Any, people: Mapping[str, str]) -> str | None:
    """Who an event puts on call: `people` by SUMMARY, by an attendee's or the organizer's address, by a
    `people` key inside the SUMMARY ("On Call - Alice Smith - Primary"), else the first address (to be
    looked up in Slack), else None."""
    summary = str(event.get("SUMMARY") or "").strip()
    lowered = {key.lower(): value for key, value in people.items()}
    if summary.lower() in lowered:
        return lowered[summary.lower()]
    addresses = _addresses(event)
    for address in addresses:
        if address.lower() in lowered:
            return lowered[address.lower()]
    for key in sorted(lowered, key=len, reverse=True):
        if key and key in summary.lower():
            return lowered[key]
    return addresses[0] if addresses else None


def parse_shifts(body: str, *, start: datetime, end: datetime, zone: ZoneInfo,
                 people: Mapping[str, str]) -> list[Shift]:
    """The feed's shifts overlapping [start, end), unclipped; events naming nobody are skipped."""
    import recurring_ical_events

    calendar = parse_calendar(body)
    try:
        occurrences = recurring_ical_events.of(calendar).between(start, end)
    except (ValueError, TypeError) as exc:
        raise FeedError("the feed's recurrence rules could not be read") from exc
    out = []
    for event in occurrences:
        if str(event.get("STATUS") or "").upper() == "CANCELLED" or "DTSTART" not in event:
            continue
        who = person(event, people)
        begins = _aware(event["DTSTART"].dt, zone)
        if "DTEND" in event:
            ends = _aware(event["DTEND"].dt, zone)
        elif "DURATION" in event:
            ends = begins + event["DURATION"].dt
        else:  # RFC 5545: a date lasts the day, a date-time no time at all
            ends = begins + (timedelta(days=1) if not isinstance(event["DTSTART"].dt, datetime) else timedelta(0))
        if who is None or ends <= begins:
            continue
        out.append(Shift(who, begins, ends, LAYER))
    return sorted(out, key=lambda s: (s.start, s.user))


# -- the cached copy ------------------------------------------------------------------------------

@dataclass(frozen=True)
class FeedState:
    body: str  # "" until a first good copy arrived
    fetched_at: datetime | None  # when the last good copy was fetched (or confirmed by a 304)
    error: str | None  # why the last refresh failed; None when it worked

    def stale(self, now: datetime, refresh: timedelta) -> bool:
        return bool(self.error) or self.fetched_at is None or now - self.fetched_at > 3 * refresh

    def due(self, now: datetime, refresh: timedelta) -> bool:
        """Time to fetch again: the copy is `refresh` old, or the last refresh failed (try again soon)."""
        return bool(self.error) or self.fetched_at is None or now - self.fetched_at >= refresh


async def cached(db: Database, schedule: str) -> FeedState | None:
    async with db.session() as session:
        row = await session.get(OncallFeed, schedule)
        if row is None:
            return None
        return FeedState(row.body, as_utc(row.fetched_at) if row.body else None, row.error)


def _url(feed: IcalFeed) -> str:
    url = feed.url.reveal(where="oncall ical url").strip()
    return "https://" + url[len("webcal://"):] if url.lower().startswith("webcal://") else url


async def _download(http: httpx.AsyncClient, url: str, etag: str | None,
                    max_bytes: int) -> tuple[str | None, str | None]:
    """(body, etag), or (None, etag) for 304 Not Modified. Raises FeedError with a URL-free reason."""
    headers = {"Accept": "text/calendar"}
    if etag:
        headers["If-None-Match"] = etag
    try:
        async with http.stream("GET", url, headers=headers, follow_redirects=True) as response:
            if response.status_code == 304:
                return None, etag
            if response.status_code != 200:
                raise FeedError(f"the feed answered HTTP {response.status_code}")
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise FeedError(f"the feed is larger than {max_bytes // 1024} KiB")
                chunks.append(chunk)
            text = b"".join(chunks).decode(response.encoding or "utf-8", errors="replace")
            return text, response.headers.get("etag")
    except httpx.HTTPError as exc:  # its text can hold the URL: only the kind of failure is told
        raise FeedError(f"the feed could not be fetched ({type(exc).__name__})") from None


async def refresh(db: Database, http: httpx.AsyncClient, clock: Clock, *, schedule: str, feed: IcalFeed,
                  max_bytes: int = MAX_BYTES) -> FeedState:
    """Fetch the feed (conditionally) and store it; a failure keeps the last good copy and records why."""
    before = await cached(db, schedule)
    async with db.session() as session:
        row = await session.get(OncallFeed, schedule)
        etag = row.etag if row is not None and row.body else None
    try:
        body, new_etag = await _download(http, _url(feed), etag, max_bytes)
        if body is not None:
            parse_calendar(body)
    except FeedError as exc:
        error = str(exc)
        if before is None or before.error != error:
            log.warning("refreshing the iCal feed of schedule %s failed: %s", schedule, error)
        return await _store(db, clock, schedule=schedule, error=error)
    except ConfigError as exc:  # a missing ${VAR}: the message names the variable, never a value
        log.warning("refreshing the iCal feed of schedule %s failed: %s", schedule, exc)
        return await _store(db, clock, schedule=schedule, error=str(exc))
    return await _store(db, clock, schedule=schedule, body=body, etag=new_etag)


async def _store(db: Database, clock: Clock, *, schedule: str, body: str | None = None, etag: str | None = None,
                 error: str | None = None) -> FeedState:
    now = clock()
    insert = sqlite_insert if db.is_sqlite else pg_insert
    async with db.session() as session:
        # A write first (on SQLite it takes the lock before the read); two first refreshes make one row.
        await session.execute(insert(OncallFeed).values(schedule=schedule, body="", etag=None, fetched_at=now,
                                                        error=None).on_conflict_do_nothing(
                                                            index_elements=["schedule"]))
        row = await session.get(OncallFeed, schedule, with_for_update=True, populate_existing=True)
        assert row is not None
        if error is not None:
            row.error = error[:255]
        else:
            if body is not None:
                row.body, row.etag = body, (etag[:255] if etag else None)
            row.fetched_at, row.error = now, None
        await session.flush()
        return FeedState(row.body, as_utc(row.fetched_at) if row.body else None, row.error)


async def stored_bodies(db: Database) -> dict[str, str]:
    async with db.session() as session:
        rows = (await session.scalars(select(OncallFeed))).all()
        return {row.schedule: row.body for row in rows if row.body}
