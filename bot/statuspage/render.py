"""The page's three renderings (pure): HTML (Jinja2, autoescaped), JSON and Atom."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from bot.statuspage import state as st
from bot.templates import HERE as TEMPLATES

OVERALL = {st.OPERATIONAL: "All systems operational", st.DEGRADED: "Degraded performance",
           st.PARTIAL: "Partial outage", st.MAJOR: "Major outage"}


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%b %d, %H:%M UTC") if value else ""


def _iso(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else ""


def _pct(value: float | None) -> str:
    return "no data" if value is None else f"{value * 100:.2f}%"


def _bars(days: tuple[st.Day, ...]) -> Markup:
    """A component's day bars, made here rather than in the template: 9,000 of them on a large page, and
    nothing in them is user text (a state name, a date, a percentage)."""
    return Markup("".join(f'<i class="s-{d.state or "none"}" title="{d.day}: {_pct(d.uptime)}"></i>'
                          for d in days))


@cache
def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html.j2", "atom.j2"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = _when
    env.filters["iso"] = _iso
    env.filters["pct"] = _pct
    env.filters["bars"] = _bars
    env.globals["LABELS"] = st.LABELS
    env.globals["OVERALL"] = OVERALL
    return env


def html(page: st.Page) -> str:
    return environment().get_template("status.html.j2").render(page=page)


def atom(page: st.Page, *, base_url: str) -> str:
    """One entry per public update (newest first), of open incidents and the history."""
    entries = sorted(((i, u) for i in (*page.open_incidents, *page.history) for u in i.updates),
                     key=lambda pair: pair[1].at, reverse=True)
    updated = entries[0][1].at if entries else page.generated_at
    return environment().get_template("status_feed.atom.j2").render(page=page, entries=entries, updated=updated,
                                                                    base=base_url.rstrip("/"))


def _incident(i: st.PublicIncident) -> dict[str, Any]:
    return {"id": f"INC-{i.number}", "name": i.name, "status": i.status, "impact": i.impact,
            "components": list(i.components), "started_at": _iso(i.started_at),
            "resolved_at": _iso(i.resolved_at) or None,
            "updates": [{"status": u.status, "text": u.text, "at": _iso(u.at)} for u in i.updates]}


def as_json(page: st.Page) -> dict[str, Any]:
    return {
        "title": page.title, "generated_at": _iso(page.generated_at),
        "status": {"indicator": page.overall, "description": OVERALL[page.overall]},
        "components": [{"name": c.name, "description": c.description, "group": c.group, "status": c.state,
                        "uptime": None if c.uptime is None else round(c.uptime * 100, 3),
                        "days": [{"date": d.day.isoformat(), "status": d.state,
                                  "uptime": None if d.uptime is None else round(d.uptime * 100, 3)}
                                 for d in c.days]}
                       for c in page.components],
        "incidents": [_incident(i) for i in page.open_incidents],
        "history": [_incident(i) for i in page.history],
    }
