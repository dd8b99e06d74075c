"""Alert evaluation under load: 1,000 http_json rules per cycle against a local endpoint answering in 20 ms.

    .venv/bin/python bench/alert_eval.py [--rules 1000] [--cycles 5] [--database-url postgresql://…]

The endpoint runs in its own process (so it does not eat the bot's core); the bot process is pinned
to one core. Prints the duration of each cycle, its CPU time, the Slack calls it made, and the ack
latency of signed `/opsbot help` commands sent while the cycle runs."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BREACHING = 10  # rules whose metric is above the threshold (posted once, then unchanged)


def endpoint_main(port: int, delay: float) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def metric(request: Request) -> JSONResponse:
        await asyncio.sleep(delay)
        i = int(request.path_params["i"])
        return JSONResponse({"pool": {"checked_out": 19 if i < BREACHING else 10, "size": 20}})

    app = Starlette(routes=[Route("/metric/{i}", metric)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, backlog=2048)


async def wait_for_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError("the endpoint did not start")


async def run(args: argparse.Namespace) -> None:
    import socket

    from bot.clock import utcnow
    from bot.emulator.harness import running_bot
    from commands.alerts import eval_job_name
    from tests.conftest import load_test_config

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = subprocess.Popen([sys.executable, __file__, "--endpoint", str(port), "--delay", str(args.delay)])
    try:
        await wait_for_port(port)
        rules = [{"name": f"pool_{i}", "source": "http_json", "query": f"http://127.0.0.1:{port}/metric/{i}",
                  "path": "pool.checked_out", "ratio_of": "pool.size", "unit": "%", "warning": "> 80",
                  "for": "0s"} for i in range(args.rules)]
        config = load_test_config({"alerts": {"defaults": {"interval": "1h"}, "rules": rules,
                                              **({"concurrency": args.concurrency} if args.concurrency else {})}})
        job = eval_job_name(config.alerts.defaults.interval)
        with tempfile.TemporaryDirectory() as tmp:
            url = args.database_url or f"sqlite:///{tmp}/bench.db"
            async with running_bot(config, url, clock=utcnow) as bot:
                if args.gc_freeze:
                    # Long-lived start-up objects leave the collector's view: full collections then
                    # scan only what the cycle allocates (they otherwise pause the loop 100-250 ms).
                    gc.collect()
                    gc.freeze()
                print(f"{args.rules} http_json rules, endpoint delay {args.delay * 1000:.0f} ms, "
                      f"concurrency {config.alerts.concurrency}, gc.freeze {args.gc_freeze}, "
                      f"database {bot.deps.db.url.get_backend_name()}, "
                      f"cpu affinity {sorted(os.sched_getaffinity(0))}")
                baseline = await idle_acks(bot)
                print(f"/opsbot help acks with no cycle running: p50={baseline[0]:.1f} ms max={baseline[1]:.1f} ms")
                for cycle in range(1, args.cycles + 1):
                    await one_cycle(bot, job, cycle)
    finally:
        endpoint.terminate()
        endpoint.wait(10)


async def idle_acks(bot, n: int = 30) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    acks = []
    for _ in range(n):
        start = time.perf_counter()
        await bot.command("/opsbot", "help", settle=False)
        acks.append((time.perf_counter() - start) * 1000)
    return statistics.median(acks), max(acks)


async def one_cycle(bot, job: str, cycle: int) -> None:  # type: ignore[no-untyped-def]
    calls_before = len(bot.slack.calls)
    acks: list[float] = []
    done = asyncio.Event()

    async def commands() -> None:
        while not done.is_set():
            start = time.perf_counter()
            response = await bot.command("/opsbot", "help", settle=False)
            acks.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200 and "opsbot commands" in response.text
            await asyncio.sleep(0.02)

    sender = asyncio.create_task(commands())
    await asyncio.sleep(0)
    cpu, wall = time.process_time(), time.perf_counter()
    await bot.deps.scheduler.run_now(job)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    done.set()
    await sender
    await bot.settle()
    calls = [c[0] for c in bot.slack.calls[calls_before:]]
    slack = len([c for c in calls if c.startswith(("chat.", "views."))])
    acks.sort()
    p50 = statistics.median(acks) if acks else float("nan")
    p99 = acks[min(len(acks) - 1, int(len(acks) * 0.99))] if acks else float("nan")
    print(f"cycle {cycle}: {wall:.2f} s wall, {cpu:.2f} s CPU, {slack} Slack calls; "
          f"/opsbot help acks during the cycle: n={len(acks)} p50={p50:.1f} ms p99={p99:.1f} ms "
          f"max={max(acks) if acks else float('nan'):.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--delay", type=float, default=0.02)
    parser.add_argument("--database-url")
    parser.add_argument("--concurrency", type=int, help="alerts.concurrency (default: the config default)")
    parser.add_argument("--endpoint", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() after start-up")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the bot to one core")
    args = parser.parse_args()
    if args.endpoint:
        endpoint_main(args.endpoint, args.delay)
        return
    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    import logging

    logging.basicConfig(level=logging.WARNING)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
