"""CPU per ack inside the ASGI app, without sockets or other processes: opsbot's web process vs the bare
bolt baseline (process_before_response=True), the same signed `/incident`, `/health` and `/killswitch`
requests, called straight through each app's ASGI interface in one process.

bench/ack_latency.py measures what Slack sees, but on a 2-core machine its per-request CPU figures move by
±25 % with everything else the machine runs. This script isolates the part opsbot adds on top of bolt, so a
change to the ack path can be judged in a minute. opsbot runs as its web process does under `opsbot serve`
(role WEB, PostgreSQL): each ack enqueues its named job in a private database that no worker drains (the
CPU PostgreSQL spends is not counted: only this process's).

    .venv/bin/python bench/ack_cost.py [--requests 2000] [--repeats 15] [--profile opsbot|baseline]
        [--pg postgresql://postgres@127.0.0.1:5432/postgres] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ack_latency import SECRET, signed_commands  # noqa: E402

os.environ.setdefault("SLACK_SIGNING_SECRET", SECRET)  # read by bench/_baseline_app.py when it is imported

Asgi = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def signed_requests(n: int) -> list[tuple[bytes, list[tuple[bytes, bytes]]]]:
    """The ack bench's signed command mix, with headers as an ASGI scope carries them."""
    out = []
    for body, headers in signed_commands(n, "http://127.0.0.1:9/response"):
        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        out.append((body, [*raw, (b"host", b"bench"), (b"content-length", str(len(body)).encode())]))
    return out


async def call(app: Asgi, body: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/slack/events", "raw_path": b"/slack/events", "query_string": b"",
             "root_path": "", "headers": headers, "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 3000)}
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def opsbot_app(tmp: Path, pg: str) -> tuple[Asgi, Callable[[], Awaitable[None]]]:
    import psycopg
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from bot import worker
    from bot.app import build
    from bot.db import run_migrations
    from bot.settings import Settings

    name = f"opsbot_ack_cost_{os.getpid()}"
    with psycopg.connect(pg, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(pg).set(database=name)
    engine = create_engine(url.set(drivername="postgresql+psycopg"))
    with engine.begin() as conn:
        run_migrations(conn)
    engine.dispose()
    config = tmp / "opsbot.yml"
    config.write_text((ROOT / "bench" / "opsbot.bench.yml").read_text().replace("TARGET", "http://127.0.0.1:9"))
    settings = Settings(slack_signing_secret=SECRET, slack_bot_token="xoxb-bench",
                        slack_api_url="http://127.0.0.1:9/api/",
                        database_url=url.render_as_string(hide_password=False), opsbot_config=config,
                        log_level="ERROR")
    app = build(settings, role=worker.Role.WEB, freeze_gc=True, migrate=False)
    assert app.worker is not None

    async def no_worker_process() -> None:  # only the acking side is measured
        return None

    app.worker.start = no_worker_process  # type: ignore[method-assign]
    await app.start()

    async def stop() -> None:
        await app.stop()
        with psycopg.connect(pg, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return app.asgi, stop


async def baseline_app(_tmp: Path) -> tuple[Asgi, Callable[[], Awaitable[None]]]:
    os.environ["BASELINE_PBR"] = "1"
    from bench import _baseline_app

    async def nothing() -> None:
        return None

    return _baseline_app.asgi, nothing


async def timed(app: Asgi, pool: list[tuple[bytes, list[tuple[bytes, bytes]]]], n: int, concurrency: int = 1) -> float:
    """CPU µs per request over n requests, `concurrency` of them in flight at a time."""
    began = time.process_time()
    for start in range(0, n, concurrency):
        batch = [pool[i % len(pool)] for i in range(start, min(n, start + concurrency))]
        await asyncio.gather(*(call(app, body, headers) for body, headers in batch))
    return (time.process_time() - began) / n * 1e6


async def measure(n: int, repeats: int, profile: str | None, pg: str, concurrency: int = 1) -> dict[str, list[float]]:
    """Both apps in one process, taking turns repeat after repeat: the machine's drift costs both alike."""
    with tempfile.TemporaryDirectory() as tmp:
        apps = {"baseline": await baseline_app(Path(tmp)), "opsbot": await opsbot_app(Path(tmp), pg)}
        if profile:
            apps = {profile: apps[profile]}
        try:
            pool = signed_requests(300)
            for app, _stop in apps.values():
                for body, headers in pool:  # warm-up, and every request answered 200
                    assert await call(app, body, headers) == 200
            results: dict[str, list[float]] = {name: [] for name in apps}
            profiler = cProfile.Profile() if profile else None
            for _ in range(repeats):
                for name, (app, _stop) in apps.items():
                    if profiler:
                        profiler.enable()
                    results[name].append(await timed(app, pool, n, concurrency))
                    if profiler:
                        profiler.disable()
            if profiler:
                stats = pstats.Stats(profiler)
                stats.sort_stats("tottime").print_stats(30)
                stats.print_callees(os.environ.get("CALLEES", "slack_events|dispatch"))
            return results
        finally:
            for _app, stop in apps.values():
                await stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--profile", choices=["opsbot", "baseline"])
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--concurrency", type=int, default=1,
                        help="requests in flight at once (50: acks share group commits, as under load)")
    args = parser.parse_args()
    results = asyncio.run(measure(args.requests, args.repeats, args.profile, args.pg, args.concurrency))
    for name, values in results.items():
        print(f"{name:9} CPU µs per ack: best {min(values):6.1f}, median {statistics.median(values):6.1f}")
    if len(results) == 2:
        ratios = [ours / theirs for ours, theirs in zip(results["opsbot"], results["baseline"], strict=True)]
        print(f"opsbot / baseline: best-of-each {min(results['opsbot']) / min(results['baseline']):.2f}, "
              f"median of paired turns {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
