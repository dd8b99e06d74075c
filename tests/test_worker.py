"""`opsbot serve` as deployed: on PostgreSQL the acking web process plus its worker process (bot/worker.py),
on SQLite one process; driven by signed requests, with the Web API answered by the emulator. Each test
starts the real command line. Kills mid-burst are in tests/test_jobs_durability.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.emulator.harness import BOT_TOKEN, SIGNING_SECRET
from bot.emulator.server import EmulatorServer
from bot.emulator.signing import SlackRequests
from tests.test_alerts_replicas import eventually, free_port

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
DEADLINE = 30.0


class Served:
    """One `opsbot serve` process (with its worker) and a client that talks to it as Slack does."""

    def __init__(self, emulator: EmulatorServer, database_url: str, logs: Path) -> None:
        self.emulator = emulator
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = logs / "serve.log"
        self.env = {**os.environ, "DATABASE_URL": database_url, "SLACK_API_URL": emulator.api_url,
                    "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                    "OPSBOT_CONFIG": str(TESTS / "opsbot.test.yml"), "LOG_LEVEL": "INFO", "PYTHONPATH": str(ROOT),
                    "SCHEDULER_LOCK_INTERVAL": "0.3"}
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.requests = SlackRequests(SIGNING_SECRET, response_base=f"{emulator.base_url}/response")
        self.proc: asyncio.subprocess.Process | None = None
        self.http = httpx.AsyncClient(base_url=self.url, timeout=10)

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                env=self.env, cwd=str(self.log.parent), stdout=log, stderr=log, start_new_session=True)
        await eventually(self._worker_ready, "opsbot serve and its worker to start")

    @property
    def separate_worker(self) -> bool:
        return not self.env["DATABASE_URL"].startswith("sqlite")

    async def _worker_ready(self) -> bool:
        assert self.proc is not None
        if self.proc.returncode is not None:
            raise AssertionError(f"opsbot serve exited: {self.log.read_text()[-3000:]}")
        status = await self.status()
        if not self.separate_worker:
            return status is not None
        return bool(status and status.get("worker", {}).get("running") and status["scheduler"]["leader"])

    async def status(self) -> dict[str, Any] | None:
        try:
            response = await self.http.get("/health", timeout=2)
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    async def worker(self) -> dict[str, Any]:
        status = await self.status()
        assert status is not None
        return status["worker"]

    async def jobs(self) -> dict[str, Any]:
        status = await self.status()
        assert status is not None
        return status["jobs"]

    async def command(self, command: str, text: str, channel: str = "general") -> httpx.Response:
        found = self.emulator.state.channel(channel)
        body, headers = self.requests.command(command, text, user="U0ALICE01", channel=found.id,
                                              channel_name=found.name)
        return await self.http.post("/slack/events", content=body, headers=headers)

    async def metric(self, name: str, labels: str) -> float:
        text = (await self.http.get("/metrics")).text
        found = re.findall(rf"^{name}\{{{labels}\}} ([0-9.e+]+)$", text, re.M)
        return float(found[0]) if found else 0.0

    async def stop(self) -> None:
        """Kill the web process and its worker at once: a worker left to notice its parent's death finishes
        its shutdown in its own time, taking the next test's jobs from the same database meanwhile (a
        declaration then ran in a process talking to a stopped emulator)."""
        await self.http.aclose()
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()


@pytest.fixture
async def served(emulator: EmulatorServer, database_url: str, tmp_path: Path) -> AsyncIterator[Served]:
    server = Served(emulator, database_url, tmp_path)
    try:
        await server.start()
        yield server
    finally:
        await server.stop()


def announcements(emulator: EmulatorServer) -> list[str]:
    return [m.text for m in emulator.state.messages("#incidents")]


async def test_the_worker_does_the_work_the_web_process_acked(served: Served, emulator: EmulatorServer) -> None:
    response = await served.command("/incident", "open P2 Checkout is down")
    assert response.status_code == 200
    assert "Declaring a P2 incident" in response.json()["text"]

    texts = await eventually(lambda: announcements(emulator), "the announcement in #incidents")
    assert any("Checkout is down" in text for text in texts)
    # The queue's depth in /health is a reading up to STATS_TTL old: the job's own count says it finished.
    await eventually(lambda: _counted_done(served, "incident.declare"), "the declaration job to finish")
    if served.separate_worker:
        worker = await served.worker()
        assert worker["pid"] and worker["restarts"] == 0
        assert (await served.jobs())["backend"] == "postgresql"
    else:  # SQLite: one instance, one process, the jobs in it
        assert "worker" not in (await served.status() or {})
        assert (await served.jobs())["backend"] == "in-process"
    assert await served.metric("opsbot_commands_total", 'command="incident"') == 1.0
    assert [method for method, _ in emulator.state.calls].count("conversations.create") == 1


async def _counted_done(served: Served, job: str) -> bool:
    done = await served.metric("opsbot_jobs_total", f'job="{job}",outcome="done"')
    assert done <= 1.0, f"{job} ran {done} times"
    return done == 1.0


async def test_modal_opening_runs_once_in_the_web_process(served: Served, emulator: EmulatorServer) -> None:
    response = await served.command("/incident", "")
    assert response.status_code == 200
    await eventually(lambda: emulator.state.view_log, "the declare modal")
    await asyncio.sleep(0.5)  # a second opening (by a job as well) would have happened by now
    assert len(emulator.state.view_log) == 1
    assert await served.metric("opsbot_jobs_total", 'job="incident.modal",outcome="done"') == 0.0


async def test_sigterm_finishes_running_jobs_before_exiting(served: Served, emulator: EmulatorServer) -> None:
    emulator.state.fail("chat.postMessage", status=200, delay=1.5)  # a slow Slack: the job is still running…
    await served.command("/incident", "open P2 Shutting down")
    await eventually(lambda: emulator.state.faults == [], "the worker to reach Slack")
    worker_pid = (await served.worker())["pid"] if served.separate_worker else None
    assert served.proc is not None
    served.proc.send_signal(signal.SIGTERM)  # …when the platform stops opsbot
    # uvicorn shuts down gracefully, then re-raises the signal it caught, as a supervisor expects.
    assert await asyncio.wait_for(served.proc.wait(), 30) in (0, -signal.SIGTERM)

    assert any("Shutting down" in text for text in announcements(emulator))
    if worker_pid is not None:
        with pytest.raises(ProcessLookupError):
            os.kill(worker_pid, 0)
    assert "cancelled" not in served.log.read_text()
