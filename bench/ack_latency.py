"""Slash-command ack latency under load (issue 9).

Starts side by side on loopback: `opsbot serve` (PostgreSQL, one uvicorn worker plus its background worker
process, the Slack emulator as Web API, local target services from bench/_target_app.py behind
bench/opsbot.bench.yml), a minimal slack-bolt app with bolt's defaults, and the same app with
process_before_response=True. A small keep-alive HTTP/1.1 load generator sends signed `/incident`, `/health`
and `/killswitch` requests at concurrency 1, 10 and 50 for a bounded time, the servers taking turns for
several rounds (opsbot's background work finishes before the next server's turn), and reports requests/s and
p50/p95/p99 of the ack: per server the median round, and the target ratios per round and their median.

    .venv/bin/python bench/ack_latency.py [--seconds 5] [--rounds 3] [--pg postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.emulator.signing import SlackRequests  # noqa: E402

SECRET = "bench-signing-secret"
COMMANDS = [("/incident", "list"), ("/health", "staging"), ("/killswitch", "checkout on staging")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def requests_pool(n: int, response_base: str) -> list[bytes]:
    """Signed raw HTTP requests, cycled by the load generator (signatures stay valid for 5 minutes)."""
    signer = SlackRequests(SECRET, response_base=response_base)
    out = []
    for i in range(n):
        command, text = COMMANDS[i % len(COMMANDS)]
        body, headers = signer.command(command, text, channel="C000000001")
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        out.append((f"POST /slack/events HTTP/1.1\r\nHost: bench\r\n{head}Content-Length: {len(body)}\r\n\r\n")
                   .encode() + body)
    return out


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    if length:
        await reader.readexactly(length)
    return status


async def load(port: int, concurrency: int, seconds: float, pool: list[bytes]) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def worker(offset: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = offset
        while time.perf_counter() < stop:
            request = pool[i % len(pool)]
            i += concurrency
            start = time.perf_counter()
            writer.write(request)
            status = await read_response(reader)
            latencies.append(time.perf_counter() - start)
            if status != 200:
                errors += 1
        writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    elapsed = time.perf_counter() - began
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {"requests": len(latencies), "rps": len(latencies) / elapsed, "p50_ms": pct(0.50),
            "p95_ms": pct(0.95), "p99_ms": pct(0.99), "mean_ms": statistics.fmean(latencies) * 1000,
            "errors": errors}


def wait_drained(port: int, timeout: float = 300) -> dict[str, int]:
    """Until opsbot's worker process has no forwarded request left; its status from GET /health."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
            status = json.load(answer).get("worker") or {}
        if not status.get("pending"):
            return status
        time.sleep(0.2)
    raise RuntimeError("opsbot's worker did not drain")


LOG = ROOT / "bench" / "results" / "ack_latency.log"


def run_server(argv: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    env = {**env, "PORT": str(port)}
    LOG.parent.mkdir(exist_ok=True)
    with LOG.open("ab") as log:  # a file, not a pipe: a full pipe would stall the server
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=log)
    wait_port(port)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def median_round(rounds: list[dict[str, float]]) -> dict[str, float]:
    """The round with the median throughput, whole (its percentiles belong together)."""
    return sorted(rounds, key=lambda r: r["rps"])[len(rounds) // 2]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=5, help="rounds per level, the servers taking turns")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--levels", default="1,10,50")
    parser.add_argument("--only", help="comma-separated servers (opsbot, bolt default, bolt process_before_response)")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]

    dbname = f"opsbot_bench_{os.getpid()}"
    with psycopg.connect(args.pg, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    db_url = urlparse(args.pg)._replace(path=f"/{dbname}").geturl()
    python = sys.executable
    emulator_port, target_port = free_port(), free_port()
    ports = {"opsbot": free_port(), "bolt default": free_port(), "bolt process_before_response": free_port()}
    base_env = {**os.environ, "SLACK_SIGNING_SECRET": SECRET, "SLACK_BOT_TOKEN": "xoxb-bench",
                "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"}
    emulator = run_server([python, "-m", "bot", "emulator", "--port", str(emulator_port)], base_env, emulator_port)
    response_base = f"http://127.0.0.1:{emulator_port}/response"
    pool = requests_pool(300, response_base)
    target = run_server([python, "-m", "uvicorn", "bench._target_app:asgi", "--port", str(target_port),
                         "--log-level", "warning", "--no-access-log"], base_env, target_port)
    config = ROOT / "bench" / "results" / "opsbot.bench.yml"
    config.write_text((ROOT / "bench" / "opsbot.bench.yml").read_text().replace(
        "TARGET", f"http://127.0.0.1:{target_port}"))
    rounds: dict[str, dict[int, list[dict[str, float]]]] = {}
    memory: dict[str, float] = {}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        opsbot_env = {**base_env, "DATABASE_URL": db_url, "SLACK_API_URL": f"http://127.0.0.1:{emulator_port}/api/",
                      "OPSBOT_CONFIG": str(config)}

        def uvicorn_argv(port: int) -> list[str]:
            return [python, "-m", "uvicorn", "bench._baseline_app:asgi", "--port", str(port), "--log-level",
                    "warning", "--no-access-log"]

        # In this order, every round: opsbot's turn comes right after the process_before_response baseline's
        # (each ratio compares two neighbouring slices of the machine's time), and its background work is
        # drained before the next round starts.
        servers = {
            "bolt default": (uvicorn_argv(ports["bolt default"]), base_env),
            "bolt process_before_response": (uvicorn_argv(ports["bolt process_before_response"]),
                                             {**base_env, "BASELINE_PBR": "1"}),
            "opsbot": ([python, "-m", "bot", "serve", "--host", "127.0.0.1", "--port", str(ports["opsbot"])],
                       opsbot_env),
        }
        if args.only:
            servers = {name: servers[name] for name in args.only.split(",")}
        # All servers run side by side and idle while another is loaded; they take turns, round after round,
        # so a slow minute of the machine costs every server alike instead of skewing one ratio.
        for name, (argv, env) in servers.items():
            procs[name] = run_server(argv, env, ports[name])
        time.sleep(1.0)
        if "opsbot" in procs:
            memory["idle_rss_kib"] = rss_kib(procs["opsbot"].pid)
            worker_pid = wait_drained(ports["opsbot"]).get("pid")
            memory["worker_idle_rss_kib"] = rss_kib(worker_pid) if worker_pid else 0
        for name in procs:
            asyncio.run(load(ports[name], 1, 1.0, pool))  # warm-up
            rounds[name] = {level: [] for level in levels}
        drains = []
        for level in levels:
            for _ in range(args.rounds):
                for name in procs:
                    pool = requests_pool(300, response_base)  # signed afresh: Slack signatures go stale in 5 min
                    cpu0 = cpu_seconds(procs[name].pid)
                    result = asyncio.run(load(ports[name], level, args.seconds, pool))
                    result["cpu_us_per_request"] = (cpu_seconds(procs[name].pid) - cpu0) / result["requests"] * 1e6
                    rounds[name][level].append(result)
                    if name == "opsbot":
                        memory["after_load_rss_kib"] = max(memory.get("after_load_rss_kib", 0),
                                                           rss_kib(procs[name].pid))
                        began = time.monotonic()
                        status = wait_drained(ports[name])  # its background work must not load the next server
                        drains.append(time.monotonic() - began)
                        memory["worker_rss_kib"] = max(memory.get("worker_rss_kib", 0), rss_kib(status["pid"]))
                    time.sleep(0.5)
        if drains:
            memory["drain_seconds"] = round(max(drains), 1)
    finally:
        for proc in procs.values():
            stop(proc)
        stop(emulator)
        stop(target)
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')

    results = {name: {level: median_round(runs) for level, runs in by_level.items()}
               for name, by_level in rounds.items()}
    print(f"{'server':32} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>6} "
          f"{'CPU µs/req':>10}   (the median round of each)")
    for name, by_level in results.items():
        for level, r in by_level.items():
            print(f"{name:32} {level:>4} {r['rps']:>8.0f} {r['p50_ms']:>8.2f} {r['p95_ms']:>8.2f} "
                  f"{r['p99_ms']:>8.2f} {r['errors']:>6} {r['cpu_us_per_request']:>10.0f}")
    failed = sum(r["errors"] for by_level in rounds.values() for runs in by_level.values() for r in runs)
    if failed:
        print(f"\nWARNING: {failed} answers were not HTTP 200; the figures above do not measure acks")
    if len(results) == 3:
        ours, default, pbr = rounds["opsbot"], rounds["bolt default"], rounds["bolt process_before_response"]
        low, high = levels[0], levels[-1]

        def per_round(a: list[dict[str, float]], b: list[dict[str, float]], key: str) -> list[float]:
            return [x[key] / y[key] for x, y in zip(a, b, strict=True)]

        speedup = per_round(default[low], ours[low], "p50_ms")
        throughput = per_round(ours[high], pbr[high], "rps")
        tail = per_round(ours[high], pbr[high], "p99_ms")

        def show(values: list[float]) -> str:
            return f"median {statistics.median(values):.2f} (rounds: {', '.join(f'{v:.2f}' for v in values)})"

        print(f"\nc={low}: bolt-default p50 / opsbot p50: {show(speedup)} (target >= 5)")
        print(f"c={high}: opsbot req/s / pbr req/s: {show(throughput)} (target >= 0.8)")
        print(f"c={high}: opsbot p99 / pbr p99: {show(tail)} (target <= 1.5)")
    if memory:
        mib = {key: f"{value / 1024:.0f} MiB" for key, value in memory.items() if key.endswith("_kib")}
        print(f"opsbot web process RSS: idle {mib['idle_rss_kib']}, at most {mib['after_load_rss_kib']} after a round")
        print(f"opsbot worker process RSS: idle {mib['worker_idle_rss_kib']}, at most {mib['worker_rss_kib']}")
        print(f"the worker finished a round's acknowledged work at most {memory['drain_seconds']} s after it")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "ack_latency.json").write_text(json.dumps({"rounds": rounds, "memory": memory}, indent=2))


if __name__ == "__main__":
    main()
