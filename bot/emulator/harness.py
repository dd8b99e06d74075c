"""Drive a real opsbot the way Slack does: signed HTTP requests to /slack/events on loopback,
the Web API answered by the emulator. Used by the test suite and the benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import uvicorn

from bot.app import OpsbotApp
from bot.clock import Clock, FakeClock
from bot.config import Config
from bot.emulator.server import EmulatorServer
from bot.emulator.signing import SlackRequests
from bot.emulator.state import Message, SlackState
from bot.settings import Settings

SIGNING_SECRET = "test-signing-secret"
BOT_TOKEN = "xoxb-test-token"


class BotHarness:
    def __init__(self, app: OpsbotApp, emulator: EmulatorServer, clock: Clock) -> None:
        self.app = app
        self.emulator = emulator
        self.clock = clock
        self.deps = app.deps
        self.requests = SlackRequests(SIGNING_SECRET, response_base=f"{emulator.base_url}/response")
        self.url = ""
        self.http: httpx.AsyncClient | None = None
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def slack(self) -> SlackState:
        return self.emulator.state

    async def start(self) -> BotHarness:
        config = uvicorn.Config(self.app.asgi, host="127.0.0.1", port=0, log_level="warning", lifespan="on",
                                access_log=False)
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("opsbot did not start")
            await asyncio.sleep(0.005)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        # Idle connections are dropped here well before uvicorn's 5 s keep-alive closes them: with both at 5 s,
        # a request sent on a connection the server was closing at that moment failed with ReadError.
        self.http = httpx.AsyncClient(base_url=self.url, timeout=10, limits=httpx.Limits(keepalive_expiry=2.0))
        return self

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.aclose()
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- sending what Slack sends ------------------------------------------------------
    async def post(self, signed: tuple[bytes, dict[str, str]], **headers: str) -> httpx.Response:
        assert self.http is not None, "harness not started"
        body, signed_headers = signed
        return await self.http.post("/slack/events", content=body, headers={**signed_headers, **headers})

    async def command(self, command: str, text: str = "", *, user: str = "U0ALICE01",
                      channel: str = "general", settle: bool = True, **kwargs: Any) -> httpx.Response:
        """A slash command from `user` in `channel` (a name or id); waits for background work by default."""
        found = self.slack.channel(channel)
        response = await self.post(self.requests.command(command, text, user=user, channel=found.id,
                                                         channel_name=found.name, **kwargs))
        if settle:
            await self.settle()
        return response

    async def click(self, action_id: str, value: str | None = None, *, user: str = "U0ALICE01",
                    message: Message | None = None, channel: str | None = None,
                    view: dict[str, Any] | None = None, settle: bool = True, **kwargs: Any) -> httpx.Response:
        """Press a button on a message (or in a modal)."""
        channel_id = message.channel if message else (self.slack.channel(channel).id if channel else None)
        response = await self.post(self.requests.block_action(
            action_id, value, user=user, channel=channel_id, view=view,
            message=message.as_dict() if message else None, **kwargs))
        if settle:
            await self.settle()
        return response

    async def submit(self, view: dict[str, Any], values: dict[str, dict[str, Any]], *, user: str = "U0ALICE01",
                     settle: bool = True) -> httpx.Response:
        response = await self.post(self.requests.view_submission(view, values, user=user))
        if settle:
            await self.settle()
        return response

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait until opsbot has no job waiting or running and no task left (jobs may enqueue jobs)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (await self.deps.tasks.wait_idle(timeout=max(0.0, deadline - time.monotonic()))
                    and await self.deps.queue.wait_idle(timeout=max(0.0, deadline - time.monotonic()))):
                await asyncio.sleep(0.01)
                if self.deps.tasks.pending == 0 and await self.deps.queue.wait_idle(timeout=0.5):
                    return
        raise TimeoutError("opsbot still busy after settle timeout")

    async def run_job(self, name: str) -> None:
        await self.deps.scheduler.run_now(name)
        await self.settle()

    # -- reading what a user would see -------------------------------------------------
    def messages(self, channel: str) -> list[Message]:
        return self.slack.messages(channel)

    def last_view(self) -> dict[str, Any]:
        assert self.slack.view_log, "no modal was opened"
        return self.slack.view_log[-1]["view"]

    def ephemeral_texts(self, user: str | None = None) -> list[str]:
        """Ephemeral answers via response_url and chat.postEphemeral, in order."""
        out = [str(r.get("text", "")) + "\n" + _blocks_text(r.get("blocks")) for r in self.slack.responses]
        out += [e["text"] + "\n" + _blocks_text(e.get("blocks")) for e in self.slack.ephemerals
                if user is None or e["user"] == user]
        return out


def _blocks_text(blocks: Any) -> str:
    from bot.emulator.state import _texts

    return "\n".join(_texts(blocks or []))


def bot_settings(database_url: str, emulator: EmulatorServer, overrides: dict[str, Any] | None = None) -> Settings:
    values: dict[str, Any] = {
        "slack_bot_token": BOT_TOKEN, "slack_signing_secret": SIGNING_SECRET, "slack_api_url": emulator.api_url,
        "database_url": database_url, **(overrides or {}),
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@contextlib.asynccontextmanager
async def running_bot(config: Config, database_url: str, *, clock: Clock | None = None,
                      emulator: EmulatorServer | None = None, settings_overrides: dict[str, Any] | None = None,
                      prepare: Callable[[OpsbotApp], None] | None = None,
                      freeze_gc: bool = False) -> AsyncIterator[BotHarness]:
    """A started opsbot on `database_url` with the emulator as its Slack (`freeze_gc`: the collector set up as
    `opsbot serve` sets it, for benchmarks; tests keep the default)."""
    own_emulator = emulator is None
    emulator = emulator or await EmulatorServer().start()
    clock = clock or FakeClock()
    settings = bot_settings(database_url, emulator, settings_overrides)
    app = OpsbotApp(settings, config, clock=clock, scheduler_lock_interval=0.2, freeze_gc=freeze_gc)
    if prepare is not None:
        prepare(app)
    harness = BotHarness(app, emulator, clock)
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()
        if own_emulator:
            await emulator.stop()
