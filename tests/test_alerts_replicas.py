"""Two real `opsbot serve` processes on one PostgreSQL: one evaluates and posts, the other takes over
when the first is killed. Skipped on SQLite (SQLite means a single instance)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.emulator.harness import BOT_TOKEN, SIGNING_SECRET
from bot.emulator.localserver import LocalServer
from bot.emulator.server import EmulatorServer
from tests.conftest import BACKEND_URL, TESTS

pytestmark = pytest.mark.skipif(not BACKEND_URL.startswith("postgres"),
                                reason="multi-replica leadership needs PostgreSQL (TEST_DATABASE_URL)")
ROOT = TESTS.parent
DEADLINE = 40.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def eventually(check: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    """Poll `check` (plain or async) until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


class Replica:
    def __init__(self, name: str, port: int, env: dict[str, str], logs: Path) -> None:
        self.name, self.port, self.env, self.logs = name, port, env, logs
        self.proc: asyncio.subprocess.Process | None = None
        self.url = f"http://127.0.0.1:{port}"

    async def start(self) -> None:
        log = (self.logs / f"{self.name}.log").open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1", "--port", str(self.port),
            env=self.env, cwd=str(self.logs), stdout=log, stderr=log, start_new_session=True)
        log.close()

    def kill(self) -> None:
        """SIGKILL to the whole replica: the web process and its worker (which holds the leader lock)."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    async def get(self, client: httpx.AsyncClient, path: str) -> httpx.Response | None:
        try:
            return await client.get(self.url + path, timeout=2)
        except httpx.HTTPError:
            return None

    async def leader(self, client: httpx.AsyncClient) -> bool | None:
        response = await self.get(client, "/health")
        if response is None or response.status_code != 200:
            return None
        return bool(response.json()["scheduler"]["leader"])

    async def evaluations(self, client: httpx.AsyncClient) -> float:
        response = await self.get(client, "/metrics")
        assert response is not None
        found = re.findall(r'^opsbot_alert_evaluations_total\{outcome="ok"\} ([0-9.e+]+)$', response.text, re.M)
        return float(found[0]) if found else 0.0

    async def stop(self) -> None:
        if self.proc is not None:
            self.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 10)


@pytest.fixture
async def endpoint() -> AsyncIterator[Any]:
    state = {"value": 95.0, "hits": 0}

    async def metric(_request: Request) -> JSONResponse:
        state["hits"] += 1
        return JSONResponse({"disk": {"used_pct": state["value"]}})

    async with LocalServer(Starlette(routes=[Route("/disk", metric)])) as server:
        state["url"] = server.url
        yield state


async def test_one_replica_posts_and_the_other_takes_over(database_url: str, emulator: EmulatorServer,
                                                           endpoint: dict[str, Any], tmp_path: Path) -> None:
    config = yaml.safe_load((TESTS / "opsbot.test.yml").read_text())
    config["alerts"] = {"rules": [{
        "name": "disk_usage", "source": "http_json", "query": f"{endpoint['url']}/disk", "path": "disk.used_pct",
        "unit": "%", "warning": "> 90", "for": "0s", "interval": "1s"}]}
    config_file = tmp_path / "opsbot.yml"
    config_file.write_text(yaml.safe_dump(config))
    env = {**os.environ, "DATABASE_URL": database_url, "SLACK_API_URL": emulator.api_url,
           "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET, "OPSBOT_CONFIG": str(config_file),
           "SCHEDULER_LOCK_INTERVAL": "0.3", "LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
    replicas = [Replica("a", free_port(), env, tmp_path), Replica("b", free_port(), env, tmp_path)]
    alerts = emulator.state.channel("#alerts")
    async with httpx.AsyncClient() as client:
        try:
            await replicas[0].start()
            await eventually(lambda: replicas[0].leader(client), "replica a to lead")
            await replicas[1].start()
            assert await eventually(lambda: _is_false(replicas[1].leader(client)), "replica b to follow")

            async def posted() -> bool:
                return len(alerts.messages) >= 1

            await eventually(posted, "the disk alert to be posted")
            hits = endpoint["hits"]
            await eventually(lambda: _true(endpoint["hits"] >= hits + 4), "four more evaluations")
            assert len(alerts.messages) == 1 and "WARNING · disk_usage" in alerts.messages[0].all_text()
            leader, follower = replicas
            assert await leader.evaluations(client) >= 5
            assert await follower.evaluations(client) == 0
            # The web process's own samples are there too (its database probe sets this gauge): with alert rules
            # in the config, the config's validation used to import the metrics before their directory was set.
            metrics = await leader.get(client, "/metrics")
            assert metrics is not None and re.search(r"^opsbot_database_up 1\.0$", metrics.text, re.M)
            assert await follower.leader(client) is False

            # Kill the leading replica outright: its PostgreSQL sessions die, the advisory lock is released.
            assert leader.proc is not None
            leader.kill()
            await leader.proc.wait()
            endpoint["value"] = 40.0
            await eventually(lambda: follower.leader(client), "replica b to take over")

            async def resolved() -> bool:
                return any(m.thread_ts for m in alerts.messages)

            await eventually(resolved, "the alert to be resolved by replica b")
            parents = [m for m in alerts.messages if not m.thread_ts]
            replies = [m for m in alerts.messages if m.thread_ts]
            assert len(parents) == 1 and "RESOLVED · disk_usage" in parents[0].all_text()
            assert len(replies) == 1 and replies[0].thread_ts == parents[0].ts
            assert await follower.evaluations(client) >= 1
        finally:
            for replica in replicas:
                await replica.stop()


async def _is_false(value: Awaitable[bool | None]) -> bool:
    return (await value) is False


async def _true(value: bool) -> bool:
    return value
