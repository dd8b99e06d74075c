"""The status page's rendering: 100 components (90-day bars from a state history) and 1,000 incidents.

    .venv/bin/python bench/status_page.py [--components 100] [--incidents 1000] [--runs 50]

Times, in this process, building the page from plain values (`queries.build`: the bars from each
component's state changes) and rendering it (`render.html`, also JSON and Atom), after a warm-up; prints the
median and p95 of each. Target: the HTML page in under 50 ms. The database reads are not in the figure."""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.config import Config  # noqa: E402
from bot.config.status_page import ComponentStatus  # noqa: E402
from bot.statuspage import queries, render  # noqa: E402
from bot.statuspage import state as st  # noqa: E402

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def config(components: int) -> Config:
    return Config.model_validate({
        "severities": [{"name": "P1"}, {"name": "P2"}, {"name": "P3"}],
        "status_page": {"title": "Bench status", "components": [
            {"name": f"Component {i:03d}", "description": f"Service number {i}", "group": f"Group {i // 10}",
             "services": [f"svc{i}"]} for i in range(components)]},
    })


def data(cfg: Config, incidents: int, rng: random.Random) -> tuple[
        dict[str, ComponentStatus], list[st.PublicIncident], dict[str, list[tuple[datetime, ComponentStatus]]]]:
    page = cfg.status_page
    assert page is not None
    names = [c.name for c in page.components]
    changes: dict[str, list[tuple[datetime, ComponentStatus]]] = {}
    for name in names:
        at, history = NOW - timedelta(days=95), []
        while at < NOW:
            history.append((at, rng.choice(st.ORDER) if rng.random() < 0.3 else st.OPERATIONAL))
            at += timedelta(hours=rng.randint(6, 96))
        changes[name] = history
    out = []
    for n in range(incidents):
        started = NOW - timedelta(days=89) + timedelta(minutes=n * 120)
        resolved = None if n >= incidents - 3 else started + timedelta(hours=2)
        facts = st.IncidentFacts(n + 1, f"Incident {n}", rng.choice(["P1", "P2", "P3"]), f"svc{n % len(names)}",
                                 None, started, resolved)
        notes = [st.Note("investigating", f"We are investigating an issue <{n}> & more.", started),
                 st.Note("resolved" if resolved else "identified", "This incident has been resolved.",
                         started + timedelta(hours=1))]
        out.append(st.public_incident(cfg, page, facts, notes))
    out.sort(key=lambda i: i.started_at, reverse=True)
    states: dict[str, ComponentStatus] = {name: rng.choice(st.ORDER) for name in names}
    return states, out, changes


def timed(fn: object, runs: int) -> tuple[list[float], list[float]]:
    """(wall ms, CPU ms) of each run: on a shared machine the CPU time is the steadier figure."""
    assert callable(fn)
    fn()
    wall, cpu = [], []
    for _ in range(runs):
        started, started_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    return sorted(wall), sorted(cpu)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--components", type=int, default=100)
    parser.add_argument("--incidents", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    cfg = config(args.components)
    page_cfg = cfg.status_page
    assert page_cfg is not None
    states, incidents, changes = data(cfg, args.incidents, random.Random(18))

    def build() -> st.Page:
        return queries.build(config=cfg, page=page_cfg, now=NOW, states=states, incidents=incidents, changes=changes)

    page = build()
    html = render.html(page)
    print(f"{args.components} components, {args.incidents} incidents ({len(page.history)} in history), "
          f"{sum(len(i.updates) for i in incidents)} public updates; HTML {len(html) / 1024:.0f} KiB")
    for label, fn in (("build (bars)", build), ("render HTML", lambda: render.html(page)),
                      ("build + HTML", lambda: render.html(build())),
                      ("render JSON", lambda: json.dumps(render.as_json(page))),
                      ("render Atom", lambda: render.atom(page, base_url="https://status.example.com"))):
        wall, cpu = timed(fn, args.runs)
        print(f"{label:>14}: median {statistics.median(wall):6.1f} ms, p95 {wall[int(len(wall) * 0.95) - 1]:6.1f} ms"
              f" wall; CPU median {statistics.median(cpu):6.1f} ms")


if __name__ == "__main__":
    main()
