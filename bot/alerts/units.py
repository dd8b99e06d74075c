"""Units of alert values and thresholds: `> 2s` on a rule in `ms` means `> 2000`, shown as `> 2000 ms`.

A rule's `unit` is free text. Known units belong to a dimension (time, percent, bytes) and convert within
it; any other unit (`""`, `req/s`, `connections`) is a plain count, which takes bare numbers and thresholds
written in that same unit. A threshold whose unit cannot convert to the rule's is refused at config load.
"""

from __future__ import annotations

from dataclasses import dataclass

TIME, PERCENT, BYTES, COUNT = "time", "percent", "bytes", "count"


@dataclass(frozen=True)
class Unit:
    symbol: str
    dimension: str
    factor: float  # how many base units (s, %, B) one of this is


_KNOWN = [
    Unit("ms", TIME, 0.001), Unit("s", TIME, 1), Unit("m", TIME, 60), Unit("h", TIME, 3600), Unit("d", TIME, 86400),
    Unit("%", PERCENT, 1),
    Unit("B", BYTES, 1), Unit("KB", BYTES, 1e3), Unit("MB", BYTES, 1e6), Unit("GB", BYTES, 1e9),
    Unit("TB", BYTES, 1e12), Unit("KiB", BYTES, 1024), Unit("MiB", BYTES, 1024**2), Unit("GiB", BYTES, 1024**3),
    Unit("TiB", BYTES, 1024**4),
]
_ALIASES = {"sec": "s", "secs": "s", "seconds": "s", "second": "s", "min": "m", "mins": "m", "minutes": "m",
            "minute": "m", "hours": "h", "hour": "h", "days": "d", "day": "d", "msec": "ms", "milliseconds": "ms",
            "percent": "%", "bytes": "B", "byte": "B", "kb": "KB", "mb": "MB", "gb": "GB", "tb": "TB",
            "kib": "KiB", "mib": "MiB", "gib": "GiB", "tib": "TiB"}
UNITS = {u.symbol: u for u in _KNOWN}
_NAMES = {COUNT: "a plain count", TIME: "a time", PERCENT: "a percentage", BYTES: "a size in bytes"}


def unit_of(symbol: str) -> Unit:
    """The unit `symbol` names; anything unknown (including "") is a plain count in that unit."""
    text = symbol.strip()
    found = UNITS.get(text) or UNITS.get(_ALIASES.get(text, _ALIASES.get(text.lower(), "")))
    return found or Unit(text, COUNT, 1)


def known(symbol: str) -> bool:
    return unit_of(symbol).dimension != COUNT


def convert(value: float, given: str, rule_unit: str, *, where: str) -> float:
    """`value` written in `given`, in the rule's unit. ValueError naming `where` when they do not convert.

    A percentage on a plain-count rule keeps its number (`> 80%` on a rule without a unit is 80, as before)."""
    source, target = unit_of(given), unit_of(rule_unit)
    if not given.strip() or source.symbol == target.symbol:
        return value
    if source.dimension == PERCENT and target.dimension == COUNT:
        return value
    if source.dimension == COUNT:
        raise ValueError(f"{where}: unknown unit {given!r} (the rule's unit is {rule_unit or 'none'}; "
                         "use ms, s, m, h, %, B, KB, MB, GB, KiB, MiB, GiB or the rule's own unit)")
    if source.dimension != target.dimension:
        raise ValueError(f"{where}: {given!r} is {_NAMES[source.dimension]} but the rule's unit "
                         f"{rule_unit or '(none)'!r} is {_NAMES[target.dimension]}: set the rule's `unit` or "
                         "write the threshold in it")
    return value * source.factor / target.factor


def format_number(value: float) -> str:
    """A threshold's number: 2000, 0.5, 1.5e+09 for the very large."""
    return f"{value:g}" if abs(value) >= 1e6 else f"{round(value, 6):.6f}".rstrip("0").rstrip(".") or "0"


def with_unit(text: str, unit: str) -> str:
    """`2000 ms`, `80%`, `3`."""
    if not unit:
        return text
    return f"{text}{unit}" if unit == "%" else f"{text} {unit}"
