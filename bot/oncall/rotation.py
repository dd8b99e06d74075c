"""Who is on call when: rotations, layers, restrictions and overrides, computed from the config (pure).

Times go in and come out as aware UTC datetimes; rotations and restrictions are laid out in the schedule's
time zone, so a hand-off at 09:00 stays at 09:00 local time across a daylight-saving change (that week is
an hour shorter or longer). A layer has nobody on call before its first hand-off (`start`) and outside its
restrictions; there the layers below it show through. Override windows win over every layer."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from bot.config.oncall import WEEKDAYS, Layer, Restriction, Schedule

OVERRIDE = "override"
HORIZON = timedelta(days=35)  # how far around `at` on_call/next_handoff look for a shift's edges


@dataclass(frozen=True)
class Shift:
    """`user` (as the config or feed names them: U…, @handle or e-mail) is on call from `start` to `end`."""

    user: str
    start: datetime
    end: datetime
    layer: str


@dataclass(frozen=True)
class OverrideWindow:
    """`user` covers the whole schedule from `start` to `end`; a later window wins over an earlier one."""

    user: str
    start: datetime
    end: datetime
    id: int | None = None  # the database row (None: from opsbot.yml)


def local_anchor(value: datetime, zone: ZoneInfo) -> datetime:
    """A config time as naive wall-clock time in `zone` (a value with an offset is converted first)."""
    if value.tzinfo is None:
        return value
    return value.astimezone(zone).replace(tzinfo=None)


def localize(wall: datetime, zone: ZoneInfo) -> datetime:
    """Naive wall-clock time in `zone` as aware UTC. In the spring-forward gap the clock's earlier offset
    applies (02:30 becomes 03:30 summer time); an autumn time that happens twice is its first occurrence."""
    return wall.replace(tzinfo=zone).astimezone(UTC)


def as_aware(value: datetime, zone: ZoneInfo) -> datetime:
    """A config time (naive = in `zone`) as aware UTC."""
    return localize(value, zone) if value.tzinfo is None else value.astimezone(UTC)


def config_overrides(schedule: Schedule) -> list[OverrideWindow]:
    zone = schedule.zone
    return [OverrideWindow(o.user, as_aware(o.start, zone), as_aware(o.end, zone)) for o in schedule.overrides]


# -- one layer ----------------------------------------------------------------------------------

def _handoff(layer: Layer, zone: ZoneInfo, index: int) -> datetime:
    return localize(local_anchor(layer.start, zone) + index * layer.rotation, zone)


def _index(layer: Layer, zone: ZoneInfo, at: datetime) -> int:
    """The rotation turn running at `at` (negative: before the first hand-off)."""
    local = at.astimezone(zone).replace(tzinfo=None)
    index = (local - local_anchor(layer.start, zone)) // layer.rotation
    while _handoff(layer, zone, index + 1) <= at:
        index += 1
    while _handoff(layer, zone, index) > at:
        index -= 1
    return index


def rotation_shifts(layer: Layer, zone: ZoneInfo, start: datetime, end: datetime, name: str = "") -> list[Shift]:
    """The layer's turns overlapping [start, end), unclipped, ignoring restrictions."""
    out: list[Shift] = []
    index = max(_index(layer, zone, start), 0)
    while True:
        begins = _handoff(layer, zone, index)
        if begins >= end:
            return out
        ends = _handoff(layer, zone, index + 1)
        if ends > start:
            out.append(Shift(layer.members[index % len(layer.members)], begins, ends, name))
        index += 1


def restriction_windows(restrictions: Sequence[Restriction], zone: ZoneInfo, start: datetime,
                        end: datetime) -> list[tuple[datetime, datetime]]:
    """The merged windows (UTC) where the restrictions let a layer apply, overlapping [start, end).

    A window starts on each listed day at `start` and ends at `end` the same day, or the next day when
    `end` is not after `start` (22:00–06:00 crosses midnight; 00:00–00:00 is the whole day)."""
    first = start.astimezone(zone).date() - timedelta(days=1)
    last = end.astimezone(zone).date()
    found: list[tuple[datetime, datetime]] = []
    day = first
    while day <= last:
        for r in restrictions:
            if WEEKDAYS[day.weekday()] in r.days:
                begins = localize(datetime.combine(day, r.start), zone)
                end_day: date = day if r.end > r.start else day + timedelta(days=1)
                ends = localize(datetime.combine(end_day, r.end), zone)
                if ends > start and begins < end:
                    found.append((begins, ends))
        day += timedelta(days=1)
    return _merge(found)


def _merge(windows: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for begins, ends in sorted(windows):
        if merged and begins <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], ends))
        else:
            merged.append((begins, ends))
    return merged


def layer_shifts(layer: Layer, zone: ZoneInfo, start: datetime, end: datetime, name: str = "") -> list[Shift]:
    """The layer's turns overlapping [start, end), cut to its restrictions (turn edges beyond the range kept)."""
    turns = rotation_shifts(layer, zone, start, end, name)
    if not layer.restrictions:
        return turns
    lo = min([start, *(t.start for t in turns)])
    hi = max([end, *(t.end for t in turns)])
    windows = restriction_windows(layer.restrictions, zone, lo, hi)
    out = []
    for turn in turns:
        for begins, ends in windows:
            cut_start, cut_end = max(turn.start, begins), min(turn.end, ends)
            if cut_start < cut_end and cut_end > start and cut_start < end:
                out.append(Shift(turn.user, cut_start, cut_end, name))
    return out


# -- composition --------------------------------------------------------------------------------

def compose(layers: Sequence[Sequence[Shift]], overrides: Sequence[OverrideWindow], start: datetime,
            end: datetime, *, stacked: bool = True) -> list[Shift]:
    """Who is on call in [start, end): an override window wins; else, `stacked`, the last layer with a
    shift there; not `stacked` (a feed), every shift there. Adjacent pieces of one person's shift in one
    layer are joined; shifts are clipped to the range."""
    # A sweep over the edges: at each edge, shifts and windows start and stop being active.
    changes: dict[datetime, list[tuple[int, int, tuple[str, str]]]] = {start: [], end: []}
    for position, layer in enumerate(layers):
        for shift in layer:
            lo, hi = max(shift.start, start), min(shift.end, end)
            if lo < hi:
                changes.setdefault(lo, []).append((position, 1, (shift.user, shift.layer)))
                changes.setdefault(hi, []).append((position, -1, (shift.user, shift.layer)))
    for position, window in enumerate(overrides, start=len(layers)):
        lo, hi = max(window.start, start), min(window.end, end)
        if lo < hi:
            changes.setdefault(lo, []).append((position, 1, (window.user, OVERRIDE)))
            changes.setdefault(hi, []).append((position, -1, (window.user, OVERRIDE)))
    active: dict[int, dict[tuple[str, str], int]] = {}
    done: list[Shift] = []
    running: dict[tuple[str, str], datetime] = {}
    for point in sorted(changes):
        for position, delta, key in changes[point]:
            counts = active.setdefault(position, {})
            counts[key] = counts.get(key, 0) + delta
            if counts[key] == 0:
                del counts[key]
        here = _covering(active, len(layers), stacked=stacked) if point < end else []
        for key in [k for k in running if k not in here]:
            done.append(Shift(key[0], running.pop(key), point, key[1]))
        for key in here:
            running.setdefault(key, point)
    return sorted(done, key=lambda s: (s.start, s.end, s.layer, s.user))


def _covering(active: dict[int, dict[tuple[str, str], int]], overrides_from: int, *,
              stacked: bool) -> list[tuple[str, str]]:
    """Who is on call given the active shifts per position (layers, then override windows)."""
    positions = sorted((p for p, keys in active.items() if keys), reverse=True)
    if positions and positions[0] >= overrides_from:  # the latest active override window
        return list(active[positions[0]])[:1]
    if stacked:
        return sorted(active[positions[0]])[:1] if positions else []
    found: list[tuple[str, str]] = []
    for position in positions:
        found += [key for key in sorted(active[position]) if key not in found]
    return found


def _layer_name(layer: Layer, position: int) -> str:
    return layer.name or f"layer {position + 1}"


def shifts(schedule: Schedule, start: datetime, end: datetime, overrides: Sequence[OverrideWindow] = (), *,
           base: Sequence[Shift] | None = None) -> list[Shift]:
    """Who is on call from `start` to `end`, clipped to that range. The config's overrides come first and
    `overrides` (the database's, oldest first) after them, so a later one wins. `base`: the shifts of a
    schedule read from an iCal feed (bot/oncall/ical.py), which may overlap."""
    windows = [*config_overrides(schedule), *overrides]
    if base is not None:
        return compose([list(base)], windows, start, end, stacked=False)
    zone = schedule.zone
    layers = [layer_shifts(layer, zone, start, end, _layer_name(layer, i)) for i, layer in enumerate(schedule.layers)]
    return compose(layers, windows, start, end)


def on_call(schedule: Schedule, at: datetime, overrides: Sequence[OverrideWindow] = (), *,
            base: Sequence[Shift] | None = None, horizon: timedelta = HORIZON) -> list[Shift]:
    """The shifts running at `at` (usually one; empty = nobody), with their edges as far as `horizon`."""
    found = shifts(schedule, at - horizon, at + horizon, overrides, base=base)
    return [s for s in found if s.start <= at < s.end]


def next_handoff(schedule: Schedule, at: datetime, overrides: Sequence[OverrideWindow] = (), *,
                 base: Sequence[Shift] | None = None, horizon: timedelta = HORIZON) -> Shift | None:
    """The first shift of someone not on call at `at` that starts after `at` (within `horizon`)."""
    found = shifts(schedule, at - horizon, at + horizon, overrides, base=base)
    now = {s.user for s in found if s.start <= at < s.end}
    later = [s for s in found if s.start > at and s.user not in now]
    return min(later, key=lambda s: s.start) if later else None
