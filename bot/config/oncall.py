"""`oncall:` — on-call schedules: rotations in layers with restrictions and overrides, or an iCal feed."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from bot.config.base import Model
from bot.config.secrets import EnvRef
from bot.durations import Duration

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
USERGROUP_ID = re.compile(r"S[A-Z0-9]{2,}")
USERGROUP_HANDLE = re.compile(r"@[a-z0-9][a-z0-9._-]{0,79}")


class Restriction(Model):
    """The layer applies only inside this window (e.g. business hours), in the schedule's time zone."""

    # The days a window starts on; a window whose `end` is not after its `start` ends the next day
    # (22:00–06:00 crosses midnight, 00:00–00:00 is the whole day).
    days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS), min_length=1)
    start: time = time(0, 0)
    end: time = time(0, 0)  # 00:00 = until midnight


class Layer(Model):
    name: str = ""
    # Slack user ids (U…), @names or e-mail addresses (looked up in Slack), in rotation order.
    members: list[str] = Field(min_length=1)
    rotation: Duration = timedelta(weeks=1)
    # The first hand-off (members[0] starts), in the schedule's time zone unless it carries an offset.
    start: datetime
    restrictions: list[Restriction] = Field(default_factory=list)

    @field_validator("rotation")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value < timedelta(hours=1):
            raise ValueError("a rotation is at least 1h")
        return value


class ScheduleOverride(Model):
    user: str
    start: datetime
    end: datetime

    @model_validator(mode="after")
    def _ordered(self) -> ScheduleOverride:
        if self.end <= self.start:
            raise ValueError("`end` must be after `start`")
        return self


class IcalFeed(Model):
    """A schedule exported as iCalendar (PagerDuty, Opsgenie, a shared calendar)."""

    url: EnvRef  # usually a secret URL: ${PAGERDUTY_PRIMARY_ICAL}
    refresh: Duration = timedelta(minutes=15)
    # How an event names its person (SUMMARY text, ATTENDEE/ORGANIZER e-mail) -> Slack user id or @handle.
    # Unmapped e-mail addresses are looked up in Slack (users.lookupByEmail).
    people: dict[str, str] = Field(default_factory=dict)


class Schedule(Model):
    description: str = ""
    time_zone: str = "UTC"
    # Later layers win where they apply (as in PagerDuty); the shorthand `members`/`rotation`/`start` is one.
    layers: list[Layer] = Field(default_factory=list)
    overrides: list[ScheduleOverride] = Field(default_factory=list)
    ical: IcalFeed | None = None
    # Keep this Slack user group (handle or S… id) set to whoever is on call now.
    usergroup: str | None = None

    @field_validator("usergroup")
    @classmethod
    def _group(cls, value: str | None) -> str | None:
        if value is not None and not (USERGROUP_ID.fullmatch(value) or USERGROUP_HANDLE.fullmatch(value)):
            raise ValueError(f"`usergroup` is a user group's @handle or its S… id, not {value!r}")
        return value

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin)") from None
        return value

    @model_validator(mode="before")
    @classmethod
    def _one_layer_shorthand(cls, data: object) -> object:
        if isinstance(data, dict) and "members" in data:
            data = dict(data)
            layer = {key: data.pop(key) for key in ("members", "rotation", "start", "restrictions") if key in data}
            data["layers"] = [*data.get("layers", []), layer]
        return data

    @model_validator(mode="after")
    def _source(self) -> Schedule:
        if bool(self.layers) == bool(self.ical):
            raise ValueError("a schedule has either `layers` (or `members`) or an `ical` feed")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)
