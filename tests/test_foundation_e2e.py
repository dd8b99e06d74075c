"""The wiring, end to end: signed requests in, Slack-shaped answers out."""

from __future__ import annotations

import time

from bot.emulator.harness import BotHarness
from bot.emulator.signing import sign


async def test_help_lists_commands(bot: BotHarness) -> None:
    response = await bot.command("/opsbot", "help")
    assert response.status_code == 200
    body = response.json()
    assert body["response_type"] == "ephemeral"
    text = str(body["blocks"])
    assert "/opsbot whoami" in text


async def test_bare_opsbot_is_help(bot: BotHarness) -> None:
    response = await bot.command("/opsbot", "")
    assert "/opsbot help" in str(response.json()["blocks"])


async def test_whoami_shows_permissions_through_response_url(bot: BotHarness) -> None:
    response = await bot.command("/opsbot", "whoami", user="U0BOB0001")
    assert response.status_code == 200 and response.text == ""
    answer = bot.ephemeral_texts()[-1]
    assert "U0BOB0001" in answer
    # Bob is not in @oncall: prod kill switches are refused, staging is open to everyone.
    assert "🚫 `killswitch` in *prod*" in answer
    assert "✅ `killswitch` in *staging*" in answer


async def test_whoami_resolves_user_group_membership(bot: BotHarness) -> None:
    await bot.command("/opsbot", "whoami", user="U0ALICE01")
    assert "✅ `killswitch` in *prod* — allowed as oncall" in bot.ephemeral_texts()[-1]


async def test_unknown_subcommand_gets_a_clear_answer(bot: BotHarness) -> None:
    response = await bot.command("/opsbot", "frobnicate")
    assert "Unknown subcommand `frobnicate`" in response.json()["text"]


async def _raw(bot: BotHarness, headers: dict[str, str]) -> int:
    body, _ = bot.requests.command("/opsbot", "whoami")
    assert bot.http is not None
    response = await bot.http.post("/slack/events", content=body,
                                   headers={"Content-Type": "application/x-www-form-urlencoded", **headers})
    await bot.settle()
    return response.status_code


async def test_unsigned_bad_and_stale_requests_get_401_and_do_nothing(bot: BotHarness) -> None:
    body, _ = bot.requests.command("/opsbot", "whoami")
    calls_before = len(bot.slack.calls)
    assert await _raw(bot, {}) == 401
    assert await _raw(bot, sign("wrong-secret", body)) == 401
    assert await _raw(bot, sign("test-signing-secret", body, int(time.time()) - 6 * 60)) == 401
    assert await _raw(bot, {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=00"}) == 401
    assert bot.slack.responses == []
    assert len(bot.slack.calls) == calls_before


async def test_health_endpoints(bot: BotHarness) -> None:
    assert bot.http is not None
    live = await bot.http.get("/health/live")
    ready = await bot.http.get("/health/ready")
    health = await bot.http.get("/health")
    assert live.status_code == 200 and ready.json() == {"status": "ready"}
    data = health.json()
    assert data["database"]["status"] == "ok" and data["version"]
    assert "password" not in health.text
    metrics = await bot.http.get("/metrics")
    assert "opsbot_slack_requests_total" in metrics.text


async def test_app_mention_is_answered_once_even_when_slack_redelivers(bot: BotHarness) -> None:
    general = bot.slack.channel("general")
    posted = bot.slack.call("chat.postMessage", {"channel": general.id, "text": "<@U0BOT0001> help?"})
    event = {"type": "app_mention", "user": "U0ALICE01", "text": "<@U0BOT0001> help?", "channel": general.id,
             "ts": posted["ts"], "event_ts": posted["ts"]}
    first = await bot.post(bot.requests.event(event, event_id="Ev0MENTION1"))
    retry = await bot.post(bot.requests.event(event, event_id="Ev0MENTION1"), **{"X-Slack-Retry-Num": "1",
                                                                                "X-Slack-Retry-Reason": "http_timeout"})
    await bot.settle()
    assert first.status_code == 200 and retry.status_code == 200
    replies = [m for m in bot.messages("general") if m.thread_ts == posted["ts"]]
    assert len(replies) == 1 and "/opsbot help" in replies[0].text


async def test_url_verification_challenge(bot: BotHarness) -> None:
    import json

    from bot.emulator.signing import sign

    body = json.dumps({"token": "x", "challenge": "c-123", "type": "url_verification"}).encode()
    assert bot.http is not None
    response = await bot.http.post("/slack/events", content=body, headers={
        "Content-Type": "application/json", **sign("test-signing-secret", body)})
    assert response.status_code == 200 and response.json() == {"challenge": "c-123"}


async def test_permission_check_survives_a_slack_outage_by_denying_group_members(bot: BotHarness) -> None:
    """usergroups.list failing must not turn into an error: group membership is unknown, so prod is refused."""
    bot.slack.fail("usergroups.list", status=200, error="missing_scope", count=5)
    await bot.command("/opsbot", "whoami", user="U0ALICE01")
    answer = bot.ephemeral_texts()[-1]
    assert "🚫 `killswitch` in *prod*" in answer and "✅ `killswitch` in *staging*" in answer
