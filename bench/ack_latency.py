"""Slash-command ack latency under load (issue 9).

Starts side by side on loopback: `opsbot serve` (PostgreSQL, one uvicorn worker plus its background worker
process, the Slack emulator as Web API, local target services from bench/_target_app.py behind
bench/opsbot.bench.yml), a minimal slack-bolt app with bolt's defaults, and the same app with
process_before_response=True. A small keep-alive HTTP/1.1 load generator sends signed `/incident`, `/health`
and `/killswitch` requests at concurrency 1, 10 and 50 for a bounded time, the servers taking turns for
several rounds (opsbot's background work finishes before the next server's turn), and reports requests/s and
p50/p95/p99 of the ack: per server the median round, and the target ratios per round and their median. It
also reports where the machine's CPU went during each c=50 slice.

Each server under test runs on the same core, the machine's last, with its child processes (opsbot's worker
shares opsbot's core); the load generator and the stand-ins run on the other cores (`--no-pin`: anywhere).
The emulator and the target services stand for other machines (Slack, the monitored services): they also run
at the lowest CPU priority (`--standins-nice 19`; 0 runs them at normal priority).

    .venv/bin/python bench/ack_latency.py [--seconds 5] [--rounds 5] [--levels 1,10,50] [--standins-nice 19]
        [--only opsbot,...] [--pg postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import array
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


def machine_busy_seconds() -> float:
    """CPU time all cores spent busy so far (from /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def postgres_seconds() -> float:
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            text = stat.read_text()
            if "(postgres)" in text:
                total += cpu_seconds(int(stat.parent.name))
    return total


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named process, of PostgreSQL, of this process and of the whole machine."""
    own = os.times()
    snap = {name: cpu_seconds(pid) for name, pid in pids.items()}
    snap.update({"postgres": postgres_seconds(), "load generator": own.user + own.system,
                 "machine": machine_busy_seconds()})
    return snap


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def replica_kib(root: int) -> dict[str, int]:
    """Memory of `root` and its descendants, three ways: RSS summed (a page two processes share counted in
    each), PSS summed (each shared page split between the processes that map it), and the resident set of the
    replica as a whole (each physical page once, read from /proc/PID/pagemap; 0 when this user may not read
    page frame numbers): the last is what the replica occupies, and what its cgroup is charged for these
    pages."""
    family = descendants(root)
    totals = {"rss": 0, "pss": 0}
    for pid in family:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                key = line.split(":")[0].lower()
                if key in totals:
                    totals[key] += int(line.split()[1])
        except OSError:
            continue
    frames: set[int] = set()
    for pid in family:
        frames |= resident_frames(pid)
    totals["unique"] = len(frames) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    return totals


def note_replica(memory: dict[str, float], root: int) -> None:
    """The replica's memory now, kept where it is the most yet."""
    now = replica_kib(root)
    for key in ("rss", "pss", "unique"):
        memory[f"replica_{key}_kib"] = max(memory.get(f"replica_{key}_kib", 0), now[key])


def descendants(root: int) -> set[int]:
    """`root` and every process below it."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    family, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in family} - family
        family |= more
        grew = bool(more)
    return family


PRESENT = 1 << 63
FRAME = (1 << 55) - 1


def resident_frames(pid: int) -> set[int]:
    """The physical page frames of `pid`'s resident pages (pagemap: bit 63 present, bits 0-54 the frame,
    which reads as 0 without CAP_SYS_ADMIN)."""
    page = os.sysconf("SC_PAGE_SIZE")
    frames: set[int] = set()
    try:
        ranges = [line.split()[0].split("-") for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
                  if not line.endswith("[vsyscall]")]
        with open(f"/proc/{pid}/pagemap", "rb") as pagemap:
            for start, end in ranges:
                first, last = int(start, 16) // page, int(end, 16) // page
                pagemap.seek(first * 8)
                entries = array.array("Q", pagemap.read((last - first) * 8))
                frames.update(entry & FRAME for entry in entries if entry & PRESENT)
    except OSError:
        return set()
    frames.discard(0)
    return frames


def signed_commands(n: int, response_base: str) -> list[tuple[bytes, dict[str, str]]]:
    """n signed slash commands (body, headers), cycling through COMMANDS."""
    signer = SlackRequests(SECRET, response_base=response_base)
    return [signer.command(*COMMANDS[i % len(COMMANDS)], channel="C000000001") for i in range(n)]


def requests_pool(n: int, response_base: str) -> list[bytes]:
    """Signed raw HTTP requests, cycled by the load generator (signatures stay valid for 5 minutes)."""
    out = []
    for body, headers in signed_commands(n, response_base):
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

    return {"requests": len(latencies), "seconds": elapsed, "rps": len(latencies) / elapsed, "p50_ms": pct(0.50),
            "p95_ms": pct(0.95), "p99_ms": pct(0.99), "mean_ms": statistics.fmean(latencies) * 1000,
            "errors": errors}


def wait_drained(port: int, timeout: float = 300) -> dict[str, int]:
    """Until opsbot's job queue has nothing waiting or running; its worker's status from GET /health."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
            health = json.load(answer)
        jobs = health.get("jobs") or {}
        if jobs.get("waiting") == 0 and jobs.get("running") == 0:
            return health.get("worker") or {}
        time.sleep(0.1)
    raise RuntimeError("opsbot's job queue did not drain")


LOG = ROOT / "bench" / "results" / "ack_latency.log"


def run_server(argv: list[str], env: dict[str, str], port: int, *, nice: int = 0,
               cpus: set[int] | None = None) -> subprocess.Popen[bytes]:
    """A server in its own process (and its children with it): at CPU priority `nice`, on `cpus` if given."""
    env = {**env, "PORT": str(port)}
    LOG.parent.mkdir(exist_ok=True)

    def placed() -> None:
        if nice:
            os.nice(nice)
        if cpus:
            os.sched_setaffinity(0, cpus)

    with LOG.open("ab") as log:  # a file, not a pipe: a full pipe would stall the server
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=log, preexec_fn=placed)
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
    # The emulator (Slack) and the target services stand for other machines; at normal priority on a 2-core
    # machine they would compete with the load generator and the acking process for the cores.
    parser.add_argument("--standins-nice", type=int, default=19,
                        help="CPU priority of the Slack emulator and the target services (0 = normal)")
    parser.add_argument("--no-pin", action="store_true",
                        help="let every process run on any core (default: servers on the last, the rest elsewhere)")
    parser.add_argument("--only", help="comma-separated servers (opsbot, bolt default, bolt process_before_response)")
    parser.add_argument("--burst-seconds", type=float, default=10.0,
                        help="after the rounds: one burst at the highest concurrency this long, then the time "
                             "until its jobs are all done (0 = skip)")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    cores = sorted(os.sched_getaffinity(0))
    # Each server under test gets the same core to itself (with its child processes: opsbot's worker shares
    # opsbot's core); the load generator and the stand-ins run on the others, as they would elsewhere.
    server_cpus = others = None
    if not args.no_pin and len(cores) >= 2:
        server_cpus, others = {cores[-1]}, set(cores[:-1])
        os.sched_setaffinity(0, others)

    dbname = f"opsbot_bench_{os.getpid()}"
    with psycopg.connect(args.pg, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    db_url = urlparse(args.pg)._replace(path=f"/{dbname}").geturl()
    python = sys.executable
    emulator_port, target_port = free_port(), free_port()
    ports = {"opsbot": free_port(), "bolt default": free_port(), "bolt process_before_response": free_port()}
    base_env = {**os.environ, "SLACK_SIGNING_SECRET": SECRET, "SLACK_BOT_TOKEN": "xoxb-bench",
                "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"}
    emulator = run_server([python, "-m", "bot", "emulator", "--port", str(emulator_port)], base_env, emulator_port,
                          nice=args.standins_nice, cpus=others)
    response_base = f"http://127.0.0.1:{emulator_port}/response"
    pool = requests_pool(300, response_base)
    target = run_server([python, "-m", "uvicorn", "bench._target_app:asgi", "--port", str(target_port),
                         "--log-level", "warning", "--no-access-log"], base_env, target_port,
                        nice=args.standins_nice, cpus=others)
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
            procs[name] = run_server(argv, env, ports[name], cpus=server_cpus)
        time.sleep(1.0)
        if "opsbot" in procs:
            memory["idle_rss_kib"] = rss_kib(procs["opsbot"].pid)
            worker_pid = wait_drained(ports["opsbot"]).get("pid")
            memory["worker_idle_rss_kib"] = rss_kib(worker_pid) if worker_pid else 0
            idle = replica_kib(procs["opsbot"].pid)
            memory["replica_idle_pss_kib"], memory["replica_idle_unique_kib"] = idle["pss"], idle["unique"]
        else:
            worker_pid = None
        for name in procs:
            asyncio.run(load(ports[name], 1, 1.0, pool))  # warm-up
            rounds[name] = {level: [] for level in levels}
        if "opsbot" in procs:
            wait_drained(ports["opsbot"])  # the warm-up's background work, before the first slice
        drains = []
        for level in levels:
            for _ in range(args.rounds):
                for name in procs:
                    pool = requests_pool(300, response_base)  # signed afresh: Slack signatures go stale in 5 min
                    watched = {"server": procs[name].pid, "emulator": emulator.pid, "targets": target.pid}
                    if name == "opsbot" and worker_pid:
                        watched["worker"] = worker_pid
                    cpu0 = cpu_snapshot(watched)
                    result = asyncio.run(load(ports[name], level, args.seconds, pool))
                    cpu1 = cpu_snapshot(watched)
                    result["cpu_us_per_request"] = (cpu1["server"] - cpu0["server"]) / result["requests"] * 1e6
                    # (PostgreSQL backends that exit during a slice take their CPU time with them: hence max)
                    result["cpu_cores"] = {key: round(max(0.0, cpu1[key] - cpu0[key]) / result["seconds"], 2)
                                           for key in cpu1}
                    rounds[name][level].append(result)
                    if name == "opsbot":
                        memory["after_load_rss_kib"] = max(memory.get("after_load_rss_kib", 0),
                                                           rss_kib(procs[name].pid))
                        began = time.monotonic()
                        status = wait_drained(ports[name])  # its background work must not load the next server
                        worker_pid = status.get("pid")
                        drains.append(time.monotonic() - began)
                        if status.get("pid"):
                            memory["worker_rss_kib"] = max(memory.get("worker_rss_kib", 0),
                                                           rss_kib(status["pid"]))
                        note_replica(memory, procs[name].pid)
                    time.sleep(0.5)
        if drains:
            memory["drain_seconds"] = round(max(drains), 1)
        if "opsbot" in procs and args.burst_seconds:
            pool = requests_pool(300, response_base)
            burst = asyncio.run(load(ports["opsbot"], levels[-1], args.burst_seconds, pool))
            began = time.monotonic()
            status = wait_drained(ports["opsbot"])
            memory["burst_requests"] = burst["requests"]
            memory["burst_drain_seconds"] = round(time.monotonic() - began, 1)
            memory["after_load_rss_kib"] = max(memory.get("after_load_rss_kib", 0), rss_kib(procs["opsbot"].pid))
            if status.get("pid"):
                memory["worker_rss_kib"] = max(memory.get("worker_rss_kib", 0), rss_kib(status["pid"]))
        if "opsbot" in procs:
            note_replica(memory, procs["opsbot"].pid)
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
    high = levels[-1]
    print(f"\nwhere the machine's CPU went during the c={high} slices (cores busy, the median round of each):")
    for name, by_level in results.items():
        print(f"  {name:30} " + ", ".join(f"{key} {value:.2f}" for key, value in by_level[high]["cpu_cores"].items()))
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
        print(f"c={high}: opsbot req/s / pbr req/s: {show(throughput)} (target >= 0.7)")
        print(f"c={high}: opsbot p99 / pbr p99: {show(tail)} (target <= 2)")
    if memory:
        mib = {key: f"{value / 1024:.0f} MiB" for key, value in memory.items() if key.endswith("_kib")}
        print(f"opsbot web process RSS: idle {mib['idle_rss_kib']}, at most {mib['after_load_rss_kib']} after a round")
        print(f"opsbot worker process RSS: idle {mib.get('worker_idle_rss_kib', '-')}, "
              f"at most {mib.get('worker_rss_kib', '-')}")
        replica = (memory.get("after_load_rss_kib", 0) + memory.get("worker_rss_kib", 0)) / 1024
        print(f"replica (web + worker) RSS summed after load: {replica:.0f} MiB (pages the two share counted twice)")
        print(f"replica PSS: idle {mib.get('replica_idle_pss_kib', '-')}, at most {mib.get('replica_pss_kib', '-')} "
              "after load")
        print(f"replica resident set (each physical page once): idle {mib.get('replica_idle_unique_kib', '-')}, "
              f"at most {mib.get('replica_unique_kib', '-')} after load (target < 200 MiB); RSS summed at that "
              f"moment {mib.get('replica_rss_kib', '-')}")
        print(f"the queue was empty at most {memory['drain_seconds']} s after a round's end")
        if "burst_drain_seconds" in memory:
            print(f"a {args.burst_seconds:g} s burst at c={levels[-1]} ({memory['burst_requests']} requests): all its "
                  f"jobs done {memory['burst_drain_seconds']} s after it ended (target <= 30)")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "ack_latency.json").write_text(json.dumps({"rounds": rounds, "memory": memory}, indent=2))


if __name__ == "__main__":
    main()
