"""Rotations, layers, restrictions and overrides (bot/oncall/rotation.py): pure, on explicit instants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest

from bot.config.oncall import Schedule
from bot.oncall.rotation import OverrideWindow, Shift, next_handoff, on_call, shifts


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def schedule(**data: Any) -> Schedule:
    return Schedule.model_validate(data)


def who(s: Schedule, at: datetime, overrides: list[OverrideWindow] | None = None) -> list[str]:
    return [shift.user for shift in on_call(s, at, overrides or [])]


WEEKLY = schedule(time_zone="UTC", members=["alice", "bob", "carol"], rotation="1w", start="2026-01-05 09:00")


def test_weekly_rotation_hands_off_at_the_start_time_in_order() -> None:
    assert who(WEEKLY, utc(2026, 1, 5, 9)) == ["alice"]
    assert who(WEEKLY, utc(2026, 1, 12, 8, 59)) == ["alice"]
    assert who(WEEKLY, utc(2026, 1, 12, 9)) == ["bob"]
    assert who(WEEKLY, utc(2026, 1, 19, 9)) == ["carol"]
    assert who(WEEKLY, utc(2026, 1, 26, 9)) == ["alice"]  # round again
    assert who(WEEKLY, utc(2026, 12, 28, 9)) == ["alice"]  # 51 weeks later: 51 % 3 == 0


def test_nobody_before_the_first_handoff() -> None:
    assert who(WEEKLY, utc(2026, 1, 5, 8, 59)) == []
    assert next_handoff(WEEKLY, utc(2026, 1, 1)) == Shift("alice", utc(2026, 1, 5, 9), utc(2026, 1, 12, 9), "layer 1")


def test_current_shift_carries_its_real_edges_and_the_next_handoff() -> None:
    (now,) = on_call(WEEKLY, utc(2026, 1, 14, 3))
    assert (now.user, now.start, now.end) == ("bob", utc(2026, 1, 12, 9), utc(2026, 1, 19, 9))
    after = next_handoff(WEEKLY, utc(2026, 1, 14, 3))
    assert after is not None and (after.user, after.start) == ("carol", utc(2026, 1, 19, 9))


def test_shifts_over_a_range_are_clipped_to_it() -> None:
    found = shifts(WEEKLY, utc(2026, 1, 10), utc(2026, 1, 20))
    assert [(s.user, s.start, s.end) for s in found] == [
        ("alice", utc(2026, 1, 10), utc(2026, 1, 12, 9)),
        ("bob", utc(2026, 1, 12, 9), utc(2026, 1, 19, 9)),
        ("carol", utc(2026, 1, 19, 9), utc(2026, 1, 20)),
    ]


def test_daily_rotation_in_berlin_keeps_0900_local_across_the_spring_dst_change() -> None:
    s = schedule(time_zone="Europe/Berlin", members=["alice", "bob"], rotation="1d", start="2026-03-27 09:00")
    # CET (UTC+1) until Sun 29 Mar 02:00, then CEST (UTC+2): 09:00 local is 08:00 UTC, then 07:00 UTC.
    assert who(s, utc(2026, 3, 28, 7, 59)) == ["alice"]  # Fri's turn: Sat 09:00 CET = 08:00 UTC not yet
    assert who(s, utc(2026, 3, 28, 8)) == ["bob"]
    assert who(s, utc(2026, 3, 29, 6, 59)) == ["bob"]  # Sat 09:00 CET → Sun 09:00 CEST is 23 hours
    assert who(s, utc(2026, 3, 29, 7)) == ["alice"]
    (sunday,) = on_call(s, utc(2026, 3, 29, 8))
    assert sunday.start == utc(2026, 3, 28, 8) + timedelta(hours=23) == utc(2026, 3, 29, 7)
    assert sunday.end == utc(2026, 3, 30, 7)  # 24 hours again


def test_weekly_handoff_in_berlin_across_the_autumn_change_is_a_longer_week() -> None:
    s = schedule(time_zone="Europe/Berlin", members=["alice", "bob"], rotation="1w", start="2026-10-19 09:00")
    (first,) = on_call(s, utc(2026, 10, 20))
    assert first.start == utc(2026, 10, 19, 7)  # 09:00 CEST
    assert first.end == utc(2026, 10, 26, 8)  # 09:00 CET: 7 days + 1 hour
    assert who(s, utc(2026, 10, 26, 7, 30)) == ["alice"]
    assert who(s, utc(2026, 10, 26, 8)) == ["bob"]


def test_a_start_with_an_offset_is_converted_to_the_schedule_zone() -> None:
    s = schedule(time_zone="Europe/Berlin", members=["alice", "bob"], rotation="1d",
                 start="2026-01-05T08:00:00+00:00")  # = 09:00 Berlin
    assert who(s, utc(2026, 1, 6, 7, 59)) == ["alice"]
    assert who(s, utc(2026, 1, 6, 8)) == ["bob"]


def test_twelve_hour_rotation_follows_the_wall_clock() -> None:
    s = schedule(time_zone="America/New_York", members=["day", "night"], rotation="12h", start="2026-03-06 08:00")
    assert who(s, utc(2026, 3, 6, 13)) == ["day"]  # 08:00 EST
    assert who(s, utc(2026, 3, 7, 1)) == ["night"]  # 20:00 EST
    assert who(s, utc(2026, 3, 8, 12)) == ["day"]  # Sun 08:00 EDT = 12:00 UTC (the change was at 02:00)
    assert who(s, utc(2026, 3, 8, 11, 59)) == ["night"]


BUSINESS = schedule(time_zone="Europe/Berlin", layers=[
    {"name": "base", "members": ["carol"], "start": "2026-01-01 00:00"},
    {"name": "business", "members": ["alice", "bob"], "rotation": "1d", "start": "2026-01-05 09:00",
     "restrictions": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00"}]},
])


def test_a_restricted_later_layer_wins_inside_its_window_and_the_lower_layer_shows_through_outside() -> None:
    assert who(BUSINESS, utc(2026, 1, 5, 8)) == ["alice"]  # Mon 09:00 Berlin
    assert who(BUSINESS, utc(2026, 1, 5, 15, 59)) == ["alice"]
    assert who(BUSINESS, utc(2026, 1, 5, 16)) == ["carol"]  # 17:00 Berlin
    assert who(BUSINESS, utc(2026, 1, 6, 7, 59)) == ["carol"]
    assert who(BUSINESS, utc(2026, 1, 6, 8)) == ["bob"]
    assert who(BUSINESS, utc(2026, 1, 10, 12)) == ["carol"]  # Saturday
    (evening,) = on_call(BUSINESS, utc(2026, 1, 5, 20))
    assert (evening.layer, evening.start, evening.end) == ("base", utc(2026, 1, 5, 16), utc(2026, 1, 6, 8))


def test_friday_evening_hands_off_to_the_base_layer_for_the_weekend() -> None:
    after = next_handoff(BUSINESS, utc(2026, 1, 9, 10))  # Fri 9 Jan: alice's day (turn 4)
    assert after is not None and after.user == "carol" and after.start == utc(2026, 1, 9, 16)
    (weekend,) = on_call(BUSINESS, utc(2026, 1, 10, 12))
    assert (weekend.start, weekend.end) == (utc(2026, 1, 9, 16), utc(2026, 1, 12, 8))


def test_a_restriction_crossing_midnight() -> None:
    s = schedule(time_zone="Europe/Berlin", layers=[
        {"name": "day", "members": ["dave"], "start": "2026-01-01 00:00"},
        {"name": "night", "members": ["nina", "otto"], "rotation": "1w", "start": "2026-01-05 00:00",
         "restrictions": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "22:00", "end": "06:00"}]},
    ])
    assert who(s, utc(2026, 1, 5, 20, 59)) == ["dave"]  # Mon 21:59
    assert who(s, utc(2026, 1, 5, 21)) == ["nina"]  # Mon 22:00
    assert who(s, utc(2026, 1, 6, 4, 59)) == ["nina"]  # Tue 05:59: Monday's window still
    assert who(s, utc(2026, 1, 6, 5)) == ["dave"]  # Tue 06:00
    assert who(s, utc(2026, 1, 10, 4)) == ["nina"]  # Sat 05:00: Friday's window runs into Saturday
    assert who(s, utc(2026, 1, 10, 22)) == ["dave"]  # Sat 23:00: no Saturday window
    assert who(s, utc(2026, 1, 12, 21, 30)) == ["otto"]  # the next week's turn
    (night,) = on_call(s, utc(2026, 1, 6, 2))
    assert (night.start, night.end) == (utc(2026, 1, 5, 21), utc(2026, 1, 6, 5))


def test_a_rotation_handoff_inside_a_restricted_window_splits_it() -> None:
    s = schedule(time_zone="UTC", layers=[{"members": ["a", "b"], "rotation": "1d", "start": "2026-01-05 12:00",
                                           "restrictions": [{"start": "08:00", "end": "18:00"}]}])
    found = shifts(s, utc(2026, 1, 6, 0), utc(2026, 1, 7, 0))
    assert [(x.user, x.start.hour, x.end.hour) for x in found] == [("a", 8, 12), ("b", 12, 18)]
    assert who(s, utc(2026, 1, 6, 19)) == []  # a single restricted layer: nobody outside its windows


def test_an_all_day_restriction_on_weekends_only() -> None:
    s = schedule(time_zone="UTC", layers=[
        {"members": ["weekday"], "start": "2026-01-01 00:00"},
        {"members": ["weekend"], "start": "2026-01-01 00:00", "restrictions": [{"days": ["sat", "sun"]}]},
    ])
    assert who(s, utc(2026, 1, 9, 23, 59)) == ["weekday"]
    assert who(s, utc(2026, 1, 10, 0)) == ["weekend"]
    assert who(s, utc(2026, 1, 11, 23, 59)) == ["weekend"]
    assert who(s, utc(2026, 1, 12, 0)) == ["weekday"]


def test_a_restriction_window_in_berlin_follows_the_dst_change() -> None:
    s = schedule(time_zone="Europe/Berlin", layers=[{"members": ["x"], "start": "2026-03-01 00:00",
                                                     "restrictions": [{"start": "09:00", "end": "17:00"}]}])
    assert who(s, utc(2026, 3, 27, 8)) == ["x"]  # 09:00 CET
    assert who(s, utc(2026, 3, 30, 7)) == ["x"]  # 09:00 CEST
    assert who(s, utc(2026, 3, 30, 6, 59)) == []


def test_override_windows_win_over_layers_and_a_later_window_over_an_earlier_one() -> None:
    windows = [OverrideWindow("zoe", utc(2026, 1, 6), utc(2026, 1, 8), 1),
               OverrideWindow("yann", utc(2026, 1, 7), utc(2026, 1, 7, 6), 2)]
    assert who(WEEKLY, utc(2026, 1, 6, 12), windows) == ["zoe"]
    assert who(WEEKLY, utc(2026, 1, 7, 3), windows) == ["yann"]
    assert who(WEEKLY, utc(2026, 1, 7, 6), windows) == ["zoe"]
    assert who(WEEKLY, utc(2026, 1, 8), windows) == ["alice"]
    found = shifts(WEEKLY, utc(2026, 1, 5, 9), utc(2026, 1, 9), windows)
    assert [(s.user, s.layer) for s in found] == [("alice", "layer 1"), ("zoe", "override"), ("yann", "override"),
                                                  ("zoe", "override"), ("alice", "layer 1")]
    after = next_handoff(WEEKLY, utc(2026, 1, 7, 3), windows)
    assert after is not None and (after.user, after.start) == ("zoe", utc(2026, 1, 7, 6))


def test_an_override_covers_restricted_gaps_too() -> None:
    s = schedule(time_zone="UTC", layers=[{"members": ["a"], "start": "2026-01-01 00:00",
                                           "restrictions": [{"start": "09:00", "end": "17:00"}]}])
    assert who(s, utc(2026, 1, 6, 20), [OverrideWindow("b", utc(2026, 1, 6, 18), utc(2026, 1, 6, 22))]) == ["b"]


def test_config_overrides_are_in_the_schedule_zone_and_database_ones_win_over_them() -> None:
    s = schedule(time_zone="Europe/Berlin", members=["alice", "bob"], rotation="1w", start="2026-01-05 09:00",
                 overrides=[{"user": "carol", "start": "2026-01-06 10:00", "end": "2026-01-06 12:00"}])
    assert who(s, utc(2026, 1, 6, 8, 59)) == ["alice"]
    assert who(s, utc(2026, 1, 6, 9)) == ["carol"]  # 10:00 Berlin
    assert who(s, utc(2026, 1, 6, 11)) == ["alice"]
    assert who(s, utc(2026, 1, 6, 10), [OverrideWindow("dave", utc(2026, 1, 6, 10), utc(2026, 1, 6, 10, 30))]) \
        == ["dave"]


def test_one_member_rotation_is_one_long_shift_and_has_no_handoff() -> None:
    s = schedule(time_zone="UTC", members=["solo"], rotation="1d", start="2026-01-01 00:00")
    (now,) = on_call(s, utc(2026, 1, 10))
    assert now.end - now.start > timedelta(days=30)  # joined turns, as far as the horizon
    assert next_handoff(s, utc(2026, 1, 10)) is None


def test_a_feed_base_may_overlap_and_overrides_replace_all_of_it() -> None:
    feed_schedule = schedule(ical={"url": "https://example.invalid/feed.ics"})
    base = [Shift("a", utc(2026, 1, 5), utc(2026, 1, 12), "ical"), Shift("b", utc(2026, 1, 8), utc(2026, 1, 9), "ical")]
    assert [s.user for s in on_call(feed_schedule, utc(2026, 1, 8, 12), base=base)] == ["a", "b"]
    windows = [OverrideWindow("c", utc(2026, 1, 8), utc(2026, 1, 10))]
    assert [s.user for s in on_call(feed_schedule, utc(2026, 1, 8, 12), windows, base=base)] == ["c"]
    assert [s.user for s in on_call(feed_schedule, utc(2026, 1, 13), base=base)] == []


@pytest.mark.parametrize("rotation", ["1h", "8h", "1d", "3d", "1w", "2w"])
def test_shifts_tile_the_range_without_gaps_or_overlaps(rotation: str) -> None:
    s = schedule(time_zone="Europe/Berlin", members=["a", "b", "c"], rotation=rotation, start="2026-03-01 09:00")
    start, end = utc(2026, 3, 20), utc(2026, 4, 20)
    found = shifts(s, start, end)
    assert found[0].start == start and found[-1].end == end
    for before, after in pairwise(found):
        assert before.end == after.start and before.user != after.user


@pytest.mark.parametrize(("data", "problem"), [
    ({"usergroup": "oncall"}, "user group's @handle or its S… id"),
    ({"restrictions": [{"days": []}]}, "at least 1 item"),
    ({"rotation": "30m"}, "a rotation is at least 1h"),
    ({"time_zone": "Mars/Olympus"}, "unknown time zone"),
    ({"overrides": [{"user": "U1", "start": "2026-01-02 00:00", "end": "2026-01-01 00:00"}]}, "must be after"),
])
def test_schedule_config_problems_are_named(data: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        schedule(**{"members": ["U0ALICE01"], "start": "2026-01-01 00:00", **data})


def test_a_schedule_has_layers_or_a_feed() -> None:
    with pytest.raises(ValueError, match="either `layers`"):
        schedule(members=["U0ALICE01"], start="2026-01-01 00:00", ical={"url": "https://example.invalid/x.ics"})
    with pytest.raises(ValueError, match="either `layers`"):
        schedule(time_zone="UTC")
