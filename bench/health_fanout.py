"""`/health bench` over 100 endpoints that each answer in 200 ms: ack latency and signed request → final message.

The target service runs in its own process (a real service is not inside opsbot's event loop); opsbot and the
Slack emulator run here, started the way the test harness starts them.

    .venv/bin/python bench/health_fanout.py [--endpoints 100] [--delay 0.2] [--runs 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def serve(port_file: str, delay: float) -> None:
    """The target service: GET /svc/{i} answers {"status": "ok"} after `delay` seconds."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def service(request: Request) -> JSONResponse:
        await asyncio.sleep(delay)
        return JSONResponse({"status": "ok", "id": request.path_params["i"]})

    app = Starlette(routes=[Route("/svc/{i:int}", service)])

    async def main() -> None:
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                               access_log=False, backlog=1024))
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        Path(port_file).write_text(str(server.servers[0].sockets[0].getsockname()[1]))
        await task

    asyncio.run(main())


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def bench(endpoints: int, delay: float, runs: int) -> dict[str, Any]:
    from bot.config import parse_config
    from bot.emulator.harness import running_bot

    with tempfile.TemporaryDirectory() as tmp:
        port_file = os.path.join(tmp, "port")
        target = subprocess.Popen([sys.executable, __file__, "--serve", port_file, "--delay", str(delay)])
        try:
            deadline = time.monotonic() + 20
            while not os.path.exists(port_file) or not Path(port_file).read_text():
                if time.monotonic() > deadline or target.poll() is not None:
                    raise RuntimeError("the target service did not start")
                await asyncio.sleep(0.05)
            url = f"http://127.0.0.1:{Path(port_file).read_text()}"
            config = parse_config({
                "severities": [{"name": "P1", "description": "down", "response": "immediate"}],
                "environments": {"bench": {"default": True, "timeout": "5s", "latency_warn": "1s", "checks": [
                    {"name": f"svc-{i:03d}", "url": f"{url}/svc/{i}", "expect_json": {"status": "ok"}}
                    for i in range(endpoints)]}},
            })
            # The collector as `opsbot serve` sets it up (what start-up built is frozen out of its view): a
            # full collection over this process's whole heap (the emulator's included) took p95 to ~500 ms.
            async with running_bot(config, f"sqlite:///{tmp}/opsbot.db", freeze_gc=True) as bot:
                return await _measure(bot, runs)
        finally:
            target.terminate()
            target.wait(10)


async def _measure(bot: Any, runs: int) -> dict[str, Any]:
    import httpx

    arrived: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
    bot.slack.listeners.append(
        lambda kind, data: arrived.put_nowait((time.perf_counter(), data)) if kind == "response" else None)
    channel = bot.slack.channel("general")
    acks: list[float] = []
    totals: list[float] = []
    engine: list[float] = []
    first_total = 0.0
    # "Slack" sends from its own thread, so the ack is timed by a client that the bot's event loop
    # (busy starting a hundred checks right after the ack) cannot delay.
    with httpx.Client(base_url=bot.url, timeout=10) as slack:
        for run in range(runs + 1):  # run 0 opens everything for the first time: reported as "cold"
            body, headers = bot.requests.command("/health", "bench", channel=channel.id, channel_name=channel.name)
            started = time.perf_counter()
            response, acked = await asyncio.to_thread(_post, slack, body, headers)
            at, final = await asyncio.wait_for(arrived.get(), 30)
            await bot.settle()
            text = str(final.get("text", ""))
            assert response.status_code == 200 and "Checking bench" in response.json()["text"], response.text
            assert "is healthy" in text, text
            if run == 0:
                first_total = (at - started) * 1000
                continue
            acks.append((acked - started) * 1000)
            totals.append((at - started) * 1000)
            engine.append(_ms(text.rsplit("·", 1)[-1].strip()))
        # Baseline: an ack with no work behind it (an unknown environment is answered in the ack).
        baseline: list[float] = []
        for _ in range(runs):
            body, headers = bot.requests.command("/health", "nosuch", channel=channel.id, channel_name=channel.name)
            started = time.perf_counter()
            response, acked = await asyncio.to_thread(_post, slack, body, headers)
            assert "Unknown environment" in response.json()["text"], response.text
            baseline.append((acked - started) * 1000)
    return {"acks": acks, "totals": totals, "engine": engine, "cold": first_total, "baseline": baseline}


def _post(client: Any, body: bytes, headers: dict[str, str]) -> tuple[Any, float]:
    response = client.post("/slack/events", content=body, headers=headers)
    return response, time.perf_counter()


def _ms(text: str) -> float:
    """`212 ms` or `1.2 s`, as the /health summary line shows the engine's duration."""
    value, unit = text.split()
    return float(value) * (1000 if unit == "s" else 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=100)
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.delay)
        return
    result = asyncio.run(bench(args.endpoints, args.delay, args.runs))
    print(f"/health over {args.endpoints} endpoints x {args.delay * 1000:.0f} ms, {args.runs} warm runs "
          f"(+1 cold), Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    for label, values in (("ack, nothing behind it (baseline)", result["baseline"]),
                          ("ack (signed request -> HTTP 200)", result["acks"]),
                          ("checks in the engine", result["engine"]),
                          ("signed request -> final message", result["totals"])):
        print(f"  {label:34s} p50 {statistics.median(values):7.1f} ms   p95 {pct(values, 0.95):7.1f} ms   "
              f"max {max(values):7.1f} ms")
    print(f"  cold first run (new connections)   total {result['cold']:7.1f} ms")


if __name__ == "__main__":
    main()
