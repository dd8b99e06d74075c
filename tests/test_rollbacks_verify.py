"""After a successful rollback the environment's health checks run against a real local endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.emulator.harness import BotHarness
from bot.emulator.localserver import LocalServer
from commands.rollback.ids import Ids
from tests.test_rollbacks_support import (
    BOB,
    CAROL,
    HealthApp,
    command_runner,
    request_message,
    request_rollback,
    rollback_config,
    rollbacks_in_db,
    thread,
)


async def verified_bot(make_bot: Any, tmp_path: Path, health_url: str, **runner: Any) -> BotHarness:
    environments = {
        "prod": {"default": True, "timeout": "2s", "checks": [{"name": "api", "url": f"{health_url}/health",
                                                              "expect_json": {"status": "healthy"}}]},
        "staging": {"checks": [{"name": "api", "url": f"{health_url}/health"}]},
    }
    services = {"api": {"environments": {"prod": command_runner(tmp_path, **runner),
                                         "staging": command_runner(tmp_path, **runner)}}}
    return await make_bot(config=rollback_config(services, environments=environments))


async def test_healthy_after_rollback_is_verified(make_bot: Any, tmp_path: Path) -> None:
    health = HealthApp(healthy=True)
    async with LocalServer(health.app()) as server:
        bot = await verified_bot(make_bot, tmp_path, server.url)
        await request_rollback(bot, "api prod to v1")
        [row] = await rollbacks_in_db(bot)
        message = request_message(bot)
        await bot.click(Ids.APPROVE, str(row.id), user=BOB, message=message)
        await bot.click(Ids.APPROVE, str(row.id), user=CAROL, message=message)
    assert health.hits == 1
    [row] = await rollbacks_in_db(bot)
    assert (row.status, row.verification) == ("succeeded", "verified")
    assert "Rolled back and verified" in message.all_text()
    replies = thread(bot, message)
    assert "running 1 health check(s) for *prod*" in replies
    assert "Rolled back `api` in *prod* to `v1` and verified" in replies


async def test_unhealthy_after_rollback_names_the_failing_checks(make_bot: Any, tmp_path: Path) -> None:
    health = HealthApp(healthy=False)
    async with LocalServer(health.app()) as server:
        bot = await verified_bot(make_bot, tmp_path, server.url)
        await request_rollback(bot, "api staging to v1")
    [row] = await rollbacks_in_db(bot)
    assert (row.status, row.verification, row.active_key) == ("succeeded", "unhealthy", None)
    message = request_message(bot)
    assert "Rolled back but unhealthy" in message.all_text()
    replies = thread(bot, message)
    assert "but it is unhealthy" in replies and "• *api*:" in replies and "503" in replies
    assert "• *api*: expected 2xx got 503 · status=down" in replies  # what the body says, too


async def test_failed_rollback_does_not_run_health_checks(make_bot: Any, tmp_path: Path) -> None:
    health = HealthApp(healthy=True)
    async with LocalServer(health.app()) as server:
        bot = await verified_bot(make_bot, tmp_path, server.url)
        script = Path(bot.deps.config.rollbacks["api"].environments["staging"].argv[1])  # type: ignore[union-attr]
        script.write_text("import sys\nprint('registry unreachable')\nsys.exit(2)\n")
        await request_rollback(bot, "api staging to v1")
    [row] = await rollbacks_in_db(bot)
    assert (row.status, row.verification) == ("failed", None)
    assert health.hits == 0
    assert "exited with status 2" in thread(bot, request_message(bot))


async def test_verification_can_be_turned_off(make_bot: Any, tmp_path: Path) -> None:
    health = HealthApp(healthy=False)
    async with LocalServer(health.app()) as server:
        bot = await verified_bot(make_bot, tmp_path, server.url, verify=False)
        await request_rollback(bot, "api staging to v1")
    [row] = await rollbacks_in_db(bot)
    assert (row.status, row.verification) == ("succeeded", None)
    assert health.hits == 0


class Answers:
    """A /health that answers from a script of (status, body, headers), the last one repeated."""

    def __init__(self, *answers: tuple[int, dict[str, Any], dict[str, str]]) -> None:
        self.answers = list(answers)
        self.hits = 0

    def app(self) -> Starlette:
        async def health(_request: Request) -> Response:
            status, body, headers = self.answers[min(self.hits, len(self.answers) - 1)]
            self.hits += 1
            return JSONResponse(body, status_code=status, headers=headers)

        return Starlette(routes=[Route("/health", health)])


LIMITED = (429, {"error": "Too many requests"}, {"Retry-After": "0"})
HEALTHY = (200, {"status": "healthy"}, {})


async def limited_bot(make_bot: Any, tmp_path: Path, url: str, verify_timeout: str = "2s") -> BotHarness:
    environments = {"staging": {"verify_timeout": verify_timeout, "checks": [
        {"name": "api", "url": f"{url}/health"},
        {"name": "limits", "type": "rate_limit", "url": f"{url}/health", "requests": 5, "expect_429_after": 3}]}}
    services = {"api": {"environments": {"staging": command_runner(tmp_path)}}}
    return await make_bot(config=rollback_config(services, environments=environments))


async def test_verification_waits_out_a_429_then_passes(make_bot: Any, tmp_path: Path) -> None:
    health = Answers(LIMITED, LIMITED, HEALTHY)
    async with LocalServer(health.app()) as server:
        bot = await limited_bot(make_bot, tmp_path, server.url)
        await request_rollback(bot, "api staging to v1")
    assert health.hits == 3  # asked again after each 429; the rate_limit check is not part of verification
    [row] = await rollbacks_in_db(bot)
    assert (row.status, row.verification) == ("succeeded", "verified")
    replies = thread(bot, request_message(bot))
    assert "running 1 health check(s) for *staging*" in replies
    assert "api rate limited (429); retrying in 0.2 s" in replies
    assert "Rolled back `api` in *staging* to `v1` and verified" in replies


async def test_a_429_past_the_verification_timeout_is_degraded_not_unhealthy(make_bot: Any, tmp_path: Path) -> None:
    health = Answers((429, {"error": "Too many requests"}, {"Retry-After": "60"}))
    async with LocalServer(health.app()) as server:
        # 1 s, not less: the first check also builds the probes' TLS context, which took more than 300 ms on a
        # loaded CI machine and left no time for the last try.
        bot = await limited_bot(make_bot, tmp_path, server.url, verify_timeout="1s")
        await request_rollback(bot, "api staging to v1")
    assert health.hits == 2  # the 60 s wait was cut to what was left of the 1 s, then one last try
    [row] = await rollbacks_in_db(bot)
    assert (row.status, row.verification) == ("succeeded", "degraded")
    replies = thread(bot, request_message(bot))
    assert "rate limited (429); retrying in" in replies
    assert "• *api*: rate limited (429), retry after 60 s" in replies and "unhealthy" not in replies
