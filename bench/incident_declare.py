"""`/incident open …` against a slow Slack: every Web API call delayed by 100 ms in the emulator.

Measures, from sending the signed request: the ack, the announcement appearing in #incidents, and the incident
channel being fully set up (created, people invited, topic set, summary posted and pinned, announcement edited
to link the channel). Also counts the Web API calls a declaration makes, i.e. what a one-after-another
implementation would wait for. opsbot and the emulator run here, started the way the test harness starts them.

    .venv/bin/python bench/incident_declare.py [--runs 20] [--latency 0.1] [--severity P2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def set_up(state: Any, reporter: str, run: int) -> bool:
    channel = next((c for c in state.channels.values() if c.name.startswith(f"inc-{run}-")), None)
    if channel is None or not channel.topic or reporter not in channel.members:
        return False
    if not any(m.pinned for m in channel.messages):
        return False
    incidents = state.channel("incidents").messages
    return any(m.edits and f"<#{channel.id}>" in str(m.blocks) for m in incidents)


async def measure(bot: Any, runs: int, severity: str) -> dict[str, list[float]]:
    state = bot.slack
    results: dict[str, list[float]] = {"ack": [], "announcement": [], "channel": [], "calls": []}
    announced: list[float] = []

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "message" and data["channel"].name == "incidents" and not announced:
            announced.append(time.perf_counter())

    state.listeners.append(on_event)
    for run in range(1, runs + 1):
        calls_before = len(state.calls)
        announced.clear()
        signed = bot.requests.command("/incident", f"open {severity} Checkout is down run {run}",
                                      user="U0ALICE01", channel=state.channel("general").id)
        start = time.perf_counter()
        response = await bot.post(signed)
        results["ack"].append(time.perf_counter() - start)
        assert response.status_code == 200, response.text
        while not set_up(state, "U0ALICE01", run):
            if time.perf_counter() - start > 10:
                raise RuntimeError(f"run {run}: the channel was not set up within 10 s")
            await asyncio.sleep(0.001)
        results["channel"].append(time.perf_counter() - start)
        results["announcement"].append(announced[0] - start)
        await bot.settle()
        results["calls"].append(len([m for m, _ in state.calls[calls_before:]
                                     if m not in ("auth.test", "usergroups.list")]))
    return results


async def bench(runs: int, latency: float, severity: str) -> dict[str, list[float]]:
    from bot.config import parse_config
    from bot.emulator.harness import running_bot
    from bot.emulator.server import EmulatorServer

    config = parse_config({
        "channels": {"incidents": "#incidents"},
        "severities": [
            {"name": "P1", "description": "Platform down", "response": "immediate", "escalate_to": ["@vp-eng"]},
            {"name": "P2", "description": "Major feature broken", "response": "1h", "escalate_to": ["@eng-leads"]},
        ],
    })
    emulator = await EmulatorServer().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with running_bot(config, f"sqlite:///{tmp}/opsbot.db", emulator=emulator) as bot:
                await bot.settle()
                await bot.deps.directory.group_id("@vp-eng")  # warm the user group cache, as in a running bot
                emulator.state.latency = latency
                return await measure(bot, runs, severity)
    finally:
        await emulator.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--severity", default="P2")
    args = parser.parse_args()
    results = asyncio.run(bench(args.runs, args.latency, args.severity))
    ms = {k: [v * 1000 for v in values] for k, values in results.items() if k != "calls"}
    print(f"/incident open {args.severity}, Web API latency {args.latency * 1000:.0f} ms, {args.runs} runs")
    for name, label in (("ack", "ack"), ("announcement", "request → announcement posted"),
                        ("channel", "request → channel fully set up")):
        print(f"  {label:34s} median {statistics.median(ms[name]):7.1f} ms   p95 {pct(ms[name], 0.95):7.1f} ms")
    calls = statistics.median(results["calls"])
    print(f"  Web API calls per declaration: {calls:.0f} "
          f"(one after another: ≥ {calls * args.latency * 1000:.0f} ms before the channel is ready)")


if __name__ == "__main__":
    main()
