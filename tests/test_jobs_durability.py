"""Acknowledged work survives kill -9 (PostgreSQL only: real `opsbot serve` processes, the emulator in this
process). Every acked request's job runs: exactly once when it had not started, at least once (the worker
died mid-job: it runs again) when it had. What is counted is what Slack received: response_url posts,
ephemerals and DMs, messages."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import psycopg
import pytest

from bot.emulator.harness import BOT_TOKEN, SIGNING_SECRET
from bot.emulator.server import EmulatorServer
from bot.emulator.signing import SlackRequests
from bot.queue import BUNDLE, conninfo
from tests.conftest import BACKEND_URL
from tests.test_alerts_replicas import eventually, free_port

pytestmark = pytest.mark.skipif(not BACKEND_URL.startswith("postgres"),
                                reason="durability needs PostgreSQL (TEST_DATABASE_URL)")
ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
ORPHAN_EXIT = 30.0  # seconds for an orphaned worker to stop (it finishes its running jobs: up to 10 s)
RECOVERY = 25.0  # seconds from a kill to the last acked job's effect (stalled after 10 s, swept every 2 s)


class Replica:
    """One `opsbot serve` (web process + worker process) in its own process group, talking to the emulator."""

    def __init__(self, emulator: EmulatorServer, database_url: str, logs: Path, name: str = "serve") -> None:
        self.emulator = emulator
        self.port = free_port()
        self.log = logs / f"{name}.log"
        self.env = {**os.environ, "DATABASE_URL": database_url, "SLACK_API_URL": emulator.api_url,
                    "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                    "OPSBOT_CONFIG": str(TESTS / "opsbot.test.yml"), "LOG_LEVEL": "INFO", "PYTHONPATH": str(ROOT),
                    "SCHEDULER_LOCK_INTERVAL": "0.3", "WORKER_NICE": "0"}
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.requests = SlackRequests(SIGNING_SECRET, response_base=f"{emulator.base_url}/response")
        self.proc: asyncio.subprocess.Process | None = None
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=10)

    async def start(self) -> Replica:
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                env=self.env, cwd=str(self.log.parent), stdout=log, stderr=log, start_new_session=True)
        await eventually(self._ready, "opsbot serve and its worker to start", timeout=20)
        return self

    async def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.returncode is not None:
            raise AssertionError(f"opsbot serve exited: {self.log.read_text()[-3000:]}")
        health = await self.health()
        return bool(health and health.get("worker", {}).get("running") and health["scheduler"]["leader"])

    async def health(self) -> dict[str, Any] | None:
        try:
            response = await self.http.get("/health", timeout=2)
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    async def worker_pid(self) -> int:
        health = await self.health()
        assert health is not None
        return int(health["worker"]["pid"])

    async def command(self, command: str, text: str, *, user: str = "U0ALICE01", channel: str = "general",
                      response_url: bool = True) -> tuple[httpx.Response, str]:
        """A signed slash command; returns the answer and the request's response_url token."""
        found = self.emulator.state.channel(channel)
        body, headers = self.requests.command(command, text, user=user, channel=found.id, channel_name=found.name)
        fields = dict(pair.split("=", 1) for pair in body.decode().split("&"))
        token = fields["response_url"].rsplit("%2F", 1)[-1]
        if not response_url:  # as some Slack surfaces send it: the job answers by ephemeral or DM
            form = dict(parse_qsl(body.decode()))
            del form["response_url"]
            body, headers = self.requests._sign(urlencode(form).encode(), "application/x-www-form-urlencoded")
        response = await self.http.post("/slack/events", content=body, headers=headers)
        return response, token

    def kill_group(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    async def stop(self) -> None:
        await self.http.aclose()
        if self.proc is not None:
            self.kill_group()
            await self.proc.wait()


@pytest.fixture
async def replicas(emulator: EmulatorServer, database_url: str, tmp_path: Path) -> AsyncIterator[Any]:
    started: list[Replica] = []

    async def start(name: str = "serve") -> Replica:
        replica = Replica(emulator, database_url, tmp_path, name)
        started.append(replica)
        return await replica.start()

    yield start
    for replica in started:
        await replica.stop()


async def jobs_by_status(database_url: str) -> dict[str, list[dict[str, Any]]]:
    """The queue's rows now, by status, with their arguments."""
    out: dict[str, list[dict[str, Any]]] = {}
    async with await psycopg.AsyncConnection.connect(conninfo(database_url)) as conn:
        cursor = await conn.execute("SELECT status::text, task_name, args FROM procrastinate_jobs")
        for status, task, args in await cursor.fetchall():
            # A bundle (bot/queue.py `bundled`) carries several read-only jobs, all started when it is.
            for item in (args["jobs"] if task == BUNDLE else [{"name": task, "args": args}]):
                out.setdefault(status, []).append({"task": item["name"], **item["args"]})
    return out


def answered(emulator: EmulatorServer) -> Counter[str]:
    """response_url posts by request token."""
    return Counter(str(r["token"]) for r in emulator.state.responses)


def token_of(args: dict[str, Any]) -> str:
    return str(args.get("response_url") or "").rsplit("/", 1)[-1]


async def burst(replica: Replica, count: int, *, at_once: bool = True) -> list[str]:
    """`count` commands, half /opsbot whoami, half /deploys, all at once (acks that arrive together are
    enqueued together, read-only ones in bundles) or one after the other (a job each); every one must be
    acked. Their tokens."""
    commands = [("/opsbot", "whoami") if n % 2 else ("/deploys", "api prod") for n in range(count)]
    if at_once:
        sent = await asyncio.gather(*(replica.command(*command) for command in commands))
    else:
        sent = [await replica.command(*command) for command in commands]
    for response, _ in sent:
        assert response.status_code == 200 and response.text == "", response.text
    return [token for _, token in sent]


def check_effects(emulator: EmulatorServer, tokens: list[str], started: set[str]) -> None:
    """Every acked request answered; exactly once unless its job had started on a process that was killed."""
    counts = answered(emulator)
    missing = [t for t in tokens if counts[t] == 0]
    assert not missing, f"{len(missing)} acked request(s) never answered"
    twice = {t for t in tokens if counts[t] > 1}
    assert twice <= started, f"answered twice though never started before the kill: {sorted(twice - started)}"
    assert all(counts[t] <= 2 for t in tokens)


async def test_a_worker_killed_mid_burst_loses_nothing(replicas: Any, emulator: EmulatorServer,
                                                      database_url: str) -> None:
    replica = await replicas()
    gate = emulator.state.hold("usergroups.list")  # the first whoami job is mid-job, waiting on Slack…
    tokens = await burst(replica, 40)
    await eventually(lambda: emulator.state.held, "a job to be waiting on Slack")
    old = await replica.worker_pid()
    assert cmdline(old) == cmdline(replica.proc.pid), "the first worker is forked from the web process"
    os.kill(old, signal.SIGKILL)  # …when its worker dies
    killed = time.monotonic()
    await asyncio.sleep(0.2)  # its rows stay as they were at the kill until the sweep puts them back (5 s)
    started = {token_of(args) for args in (await jobs_by_status(database_url)).get("doing", [])}
    gate.set()  # the held call goes on; nobody is left to read its answer

    await eventually(lambda: all(answered(emulator)[t] for t in tokens), "every acked request's answer",
                     timeout=RECOVERY)
    recovered_in = time.monotonic() - killed
    check_effects(emulator, tokens, started)
    new = await replica.worker_pid()
    assert new != old and cmdline(new)[-2:] == ["bot", "worker"]  # a restart is a new process (not a fork)
    health = await replica.health()
    assert health is not None and health["worker"]["restarts"] == 1
    assert recovered_in < RECOVERY
    await eventually(lambda: _idle(database_url), "the queue to drain")


def cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as file:
        return [part.decode() for part in file.read().split(b"\0") if part]


async def _idle(database_url: str) -> bool:
    rows = await jobs_by_status(database_url)
    return not rows.get("todo") and not rows.get("doing")


async def test_a_web_process_killed_right_after_its_acks_loses_nothing(replicas: Any, emulator: EmulatorServer,
                                                                      database_url: str) -> None:
    replica = await replicas()
    assert replica.proc is not None
    orphan = await replica.worker_pid()
    gate = emulator.state.hold("usergroups.list")
    tokens = await burst(replica, 20)
    os.kill(replica.proc.pid, signal.SIGKILL)  # the web process only: its worker is orphaned
    gate.set()
    # The orphaned worker notices, finishes what it runs and stops; what waits in the queue stays there.
    later = await replicas("serve-again")
    await eventually(lambda: not alive(orphan), "the orphaned worker to exit", timeout=ORPHAN_EXIT)
    await eventually(lambda: all(answered(emulator)[t] for t in tokens), "every acked request's answer",
                     timeout=RECOVERY)
    check_effects(emulator, tokens, started=set(tokens))
    assert not any(count > 1 for count in answered(emulator).values()), "a job ran twice"
    await eventually(lambda: _idle(database_url), "the queue to drain")
    assert later.proc is not None and later.proc.returncode is None


def alive(pid: int) -> bool:
    """Running (not exited, not a zombie nobody reaped yet): `pid` need not be a child of this process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def declared(emulator: EmulatorServer, title: str) -> int:
    """Incident channels that exist for `title` (the announcement names it too). Channels, not
    conversations.create calls: a run killed after Slack made its channel but before the answer arrived is
    resumed by asking again, which answers name_taken, and the channel is adopted (bot/slack.py
    create_channel_once): two calls, one channel."""
    slug = title.lower().replace(" ", "-")
    return sum(1 for channel in emulator.state.channels.values() if slug in channel.name)


async def test_a_whole_replica_killed_with_jobs_queued_runs_them_all_after_restart(
        replicas: Any, emulator: EmulatorServer, database_url: str) -> None:
    replica = await replicas()
    emulator.state.latency = 1.0  # every Slack answer takes a second: jobs pile up in the queue
    titles = [f"Killed replica {n}" for n in range(4)]
    for title in titles:
        response, _ = await replica.command("/incident", f"open P2 {title}")
        assert response.status_code == 200 and "Declaring" in response.text, response.text
    tokens = await burst(replica, 60, at_once=False)  # 60 jobs: the worker runs 20 at a time
    await eventually(lambda: _some_running(database_url), "the worker to be busy")
    replica.kill_group()  # web process and worker at once
    assert replica.proc is not None
    await replica.proc.wait()
    rows = await jobs_by_status(database_url)
    started = {token_of(args) for args in rows.get("doing", [])}
    assert rows.get("todo"), "nothing was left queued: the test proves nothing"
    emulator.state.latency = 0.0

    await replicas("replacement")
    await eventually(lambda: all(answered(emulator)[t] for t in tokens), "every acked request's answer",
                     timeout=RECOVERY)
    check_effects(emulator, tokens, started)
    await eventually(lambda: all(declared(emulator, t) for t in titles), "every declaration", timeout=RECOVERY)

    def announcements() -> list[str]:
        return [m.text for m in emulator.state.messages("#incidents")]

    # A declaration resumed after the kill makes its channel and its announcement side by side: wait for both.
    await eventually(lambda: all(any(t in text for text in announcements()) for t in titles),
                     "every announcement", timeout=RECOVERY)
    announced = announcements()
    for title in titles:  # declarations are idempotent: exactly once, even when one was mid-way at the kill
        assert declared(emulator, title) == 1, title
        assert sum(title in text for text in announced) == 1, (title, announced)
    await eventually(lambda: _idle(database_url), "the queue to drain")


async def _some_running(database_url: str) -> bool:
    return bool((await jobs_by_status(database_url)).get("doing"))


async def test_a_job_that_keeps_failing_ends_with_its_requester_told(replicas: Any, emulator: EmulatorServer) -> None:
    replica = await replicas()
    # Without a response_url whoami answers by ephemeral, else by DM: Slack fails both, on all three attempts.
    emulator.state.fail("chat.postEphemeral", status=500, count=3)
    emulator.state.fail("chat.postMessage", status=500, count=3)
    response, _ = await replica.command("/opsbot", "whoami", user="U0BOB0001", response_url=False)
    assert response.status_code == 200 and response.text == ""

    def told() -> list[dict[str, Any]]:
        return [e for e in emulator.state.ephemerals if e["user"] == "U0BOB0001" and e["text"].startswith(":warning:")]

    answers = await eventually(told, "the requester to be told", timeout=RECOVERY)
    assert len(answers) == 1 and answers[0]["channel"] == emulator.state.channel("general").id
    assert not emulator.state.faults  # three attempts, each trying the ephemeral and the DM
    log = replica.log.read_text()
    # The retries' lines differ only in numbers: the log's repeat filter prints the first of them (bot/logs.py).
    assert "job opsbot.whoami failed (SlackApiError), attempt 1 of 3" in log
    assert "job opsbot.whoami failed for good after 3 attempt(s)" in log
    assert not [m for m in emulator.state.messages("U0BOB0001") if "You are" in m.text]  # no late answer
