"""httpx against aiohttp for health checks: 100 requests at once to one local target that answers in 200 ms,
each on a fresh connection (`Connection: close`, as checks are made), the body read to the end.

Prints the wall time of a round (median and max over the rounds) and the CPU this process spent per request
for each client, measured in the same run; the target runs in its own process (bench/health_fanout.py's).

    .venv/bin/python bench/probe_clients.py [--requests 100] [--rounds 12] [--delay 0.2]
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
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parents[1]
Round = Callable[[str, int], Awaitable[float]]


def timed(one: Callable[[str], Awaitable[None]]) -> Round:
    """A round: `n` requests at once, each made by `one(url)`; its wall time in ms."""
    async def run(base: str, n: int) -> float:
        started = time.perf_counter()
        await asyncio.gather(*(one(f"{base}/svc/{i}") for i in range(n)))
        return (time.perf_counter() - started) * 1000

    return run


def httpx_round(client: httpx.AsyncClient) -> Round:
    async def one(url: str) -> None:
        async with client.stream("GET", url, headers={"Connection": "close"}, timeout=httpx.Timeout(5)) as r:
            async for _chunk in r.aiter_bytes():
                pass

    return timed(one)


def aiohttp_round(session: aiohttp.ClientSession) -> Round:
    async def one(url: str) -> None:
        async with session.get(url, headers={"Connection": "close"}, allow_redirects=False,
                               timeout=aiohttp.ClientTimeout(total=5)) as r:
            async for _chunk in r.content.iter_chunked(64 * 1024):
                pass

    return timed(one)


async def main(requests: int, rounds: int, delay: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        port_file = os.path.join(tmp, "port")
        target = subprocess.Popen([sys.executable, str(ROOT / "bench" / "health_fanout.py"), "--serve", port_file,
                                   "--delay", str(delay)])
        try:
            while not os.path.exists(port_file) or not Path(port_file).read_text():
                await asyncio.sleep(0.05)
            base = f"http://127.0.0.1:{Path(port_file).read_text()}"
            async with httpx.AsyncClient(limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
                                         follow_redirects=False) as client, \
                    aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:
                clients = {"httpx": httpx_round(client), "aiohttp": aiohttp_round(session)}
                walls: dict[str, list[float]] = {name: [] for name in clients}
                cpu: dict[str, float] = dict.fromkeys(clients, 0.0)
                for turn in range(rounds + 2):  # two warm-up rounds each, interleaved so both see the same machine
                    for name, run in clients.items():
                        before = time.process_time()
                        wall = await run(base, requests)
                        if turn >= 2:
                            walls[name].append(wall)
                            cpu[name] += time.process_time() - before
        finally:
            target.terminate()
            target.wait(10)
    print(f"{requests} requests at once x {delay * 1000:.0f} ms, fresh connections, {rounds} rounds each")
    for name in walls:
        print(f"  {name:8s} round p50 {statistics.median(walls[name]):6.0f} ms  max {max(walls[name]):6.0f} ms  "
              f"CPU per request {cpu[name] / (rounds * requests) * 1000:.2f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--delay", type=float, default=0.2)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rounds, args.delay))
