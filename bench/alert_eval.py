"""Alert evaluation under load: 1,000 http_json rules per cycle against a local endpoint answering in 20 ms.

    .venv/bin/python bench/alert_eval.py [--rules 1000] [--cycles 5] [--database-url postgresql://…]
    .venv/bin/python bench/alert_eval.py --serve [--interval 20] [--seconds 70] [--database-url …]

The endpoint runs in its own process (so it does not eat the bot's core); the bot process is pinned
to one core. Prints the duration of each cycle, its CPU time, the Slack calls it made, and the ack
latency of signed `/opsbot help` commands sent while the cycle runs.

`--serve` measures the deployment instead: `opsbot serve` (web process and worker process, both pinned to the
same one core) with the Slack emulator in its own process; the worker's scheduler evaluates the rules every
`--interval` seconds while this script sends signed `/opsbot help` commands for `--seconds`, and reports the
acks sent while a cycle was running (the endpoint tells when each burst of 1,000 requests began and ended)
against those sent between cycles."""

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

    bursts: list[list[float]] = []  # [first request, last answer] of each cycle's burst, in time.time()

    async def metric(request: Request) -> JSONResponse:
        began = time.time()
        if not bursts or began - bursts[-1][1] > 2.0:
            bursts.append([began, began])
        await asyncio.sleep(delay)
        bursts[-1][1] = time.time()
        i = int(request.path_params["i"])
        return JSONResponse({"pool": {"checked_out": 19 if i < BREACHING else 10, "size": 20}})

    async def windows(_request: Request) -> JSONResponse:
        return JSONResponse(bursts)

    app = Starlette(routes=[Route("/metric/{i}", metric), Route("/bursts", windows)])
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
    print(f"cycle {cycle}: {wall:.2f} s wall, {cpu:.2f} s CPU, {slack} Slack calls; "
          f"/opsbot help acks during the cycle: {ack_summary(acks)}")


def ack_summary(acks: list[float]) -> str:
    """n, p50, p99 and max of ack latencies in ms."""
    if not acks:
        return "n=0"
    acks = sorted(acks)
    return (f"n={len(acks)} p50={statistics.median(acks):.1f} ms "
            f"p99={acks[min(len(acks) - 1, int(len(acks) * 0.99))]:.1f} ms max={acks[-1]:.1f} ms")


async def run_served(args: argparse.Namespace) -> None:
    """`opsbot serve` evaluating the rules in its worker process while this process sends commands."""
    import json
    import urllib.request

    import httpx
    import yaml

    from bench.ack_latency import SECRET, free_port, run_server, stop
    from bot.emulator.signing import SlackRequests

    port, emulator_port, bot_port = free_port(), free_port(), free_port()
    cores = sorted(os.sched_getaffinity(0))
    bot_cpus = {cores[-1]} if not args.no_pin and len(cores) >= 2 else None
    others = set(cores[:-1]) if bot_cpus else None
    if others:
        os.sched_setaffinity(0, others)
    rules = [{"name": f"pool_{i}", "source": "http_json", "query": f"http://127.0.0.1:{port}/metric/{i}",
              "path": "pool.checked_out", "ratio_of": "pool.size", "unit": "%", "warning": "> 80", "for": "0s"}
             for i in range(args.rules)]
    config = yaml.safe_load((ROOT / "bench" / "opsbot.bench.yml").read_text().replace("TARGET", "http://127.0.0.1:9"))
    config["alerts"] = {"defaults": {"interval": f"{args.interval}s"}, "rules": rules,
                        **({"concurrency": args.concurrency} if args.concurrency else {})}
    env = {**os.environ, "SLACK_SIGNING_SECRET": SECRET, "SLACK_BOT_TOKEN": "xoxb-bench", "LOG_LEVEL": "WARNING",
           "SLACK_API_URL": f"http://127.0.0.1:{emulator_port}/api/"}
    procs = []
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "opsbot.yml").write_text(yaml.safe_dump(config))
        env.update(OPSBOT_CONFIG=str(Path(tmp) / "opsbot.yml"),
                   DATABASE_URL=args.database_url or f"sqlite:///{tmp}/bench.db")
        try:
            procs.append(run_server([sys.executable, __file__, "--endpoint", str(port), "--delay", str(args.delay)],
                                    env, port, cpus=others))
            procs.append(run_server([sys.executable, "-m", "bot", "emulator", "--port", str(emulator_port)], env,
                                    emulator_port, nice=19, cpus=others))
            procs.append(run_server([sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1", "--port",
                                     str(bot_port)], env, bot_port, cpus=bot_cpus))
            print(f"opsbot serve: {args.rules} http_json rules every {args.interval} s, endpoint delay "
                  f"{args.delay * 1000:.0f} ms, database {env['DATABASE_URL'].split(':')[0]}, "
                  f"web and worker on cores {sorted(bot_cpus or cores)}")
            signer = SlackRequests(SECRET)
            sent: list[tuple[float, float]] = []  # (sent at, ack ms)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{bot_port}") as client:
                stop_at = time.time() + args.seconds
                while time.time() < stop_at:
                    body, headers = signer.command("/opsbot", "help")
                    began, start = time.time(), time.perf_counter()
                    response = await client.post("/slack/events", content=body, headers=headers)
                    sent.append((began, (time.perf_counter() - start) * 1000))
                    assert response.status_code == 200 and "opsbot commands" in response.text
                    await asyncio.sleep(0.02)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/bursts", timeout=5) as answer:
                bursts = json.load(answer)
        finally:
            for proc in reversed(procs):
                stop(proc)

    def during(at: float) -> bool:
        return any(first <= at <= last for first, last in bursts)

    for label, acks in (("during a cycle", [ms for at, ms in sent if during(at)]),
                        ("between cycles", [ms for at, ms in sent if not during(at)])):
        print(f"/opsbot help acks {label}: {ack_summary(acks)}")
    print("cycles (wall, from the endpoint's first request to its last answer): "
          + ", ".join(f"{last - first:.2f} s" for first, last in bursts))


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
    parser.add_argument("--serve", action="store_true", help="measure `opsbot serve` with its worker process")
    parser.add_argument("--interval", type=int, default=20, help="--serve: seconds between cycles")
    parser.add_argument("--seconds", type=float, default=70, help="--serve: how long to send commands")
    args = parser.parse_args()
    if args.endpoint:
        endpoint_main(args.endpoint, args.delay)
        return
    if args.serve:
        asyncio.run(run_served(args))
        return
    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    import logging

    logging.basicConfig(level=logging.WARNING)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
