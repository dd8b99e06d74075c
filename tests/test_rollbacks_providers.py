"""Each provider against a real local server or process: a fake GitHub Actions API, a webhook
receiver that checks the HMAC signature, a local script (and a stuck one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.emulator.harness import BotHarness
from bot.emulator.localserver import LocalServer
from tests.test_rollbacks_support import (
    ALICE,
    GITHUB_TOKEN,
    WEBHOOK_SECRET,
    FakeGitHub,
    WebhookReceiver,
    command_runner,
    deploys_in_db,
    everything_said,
    request_message,
    request_rollback,
    rollback_config,
    rollbacks_in_db,
    thread,
)


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLBACK_TEST_GH_TOKEN", GITHUB_TOKEN)
    monkeypatch.setenv("ROLLBACK_TEST_HOOK_SECRET", WEBHOOK_SECRET)


def github_runner(url: str, **extra: Any) -> dict[str, Any]:
    return {"provider": "github_actions", "repo": "acme/api", "workflow": "rollback.yml", "ref": "main",
            "token": "${ROLLBACK_TEST_GH_TOKEN}", "api_url": url, "poll_interval": "10ms", "timeout": "10s",
            "inputs": {"ticket": "rollback-{service}-{rollback_id}"}, **extra}


def webhook_runner(url: str, **extra: Any) -> dict[str, Any]:
    return {"provider": "webhook", "url": f"{url}/hooks/rollback", "secret": "${ROLLBACK_TEST_HOOK_SECRET}",
            "retries": 2, "retry_backoff": "10ms", "request_timeout": "2s", "poll_interval": "10ms",
            "timeout": "10s", **extra}


async def staging_bot(make_bot: Any, runner: dict[str, Any]) -> BotHarness:
    return await make_bot(config=rollback_config({"api": {"environments": {"staging": runner}}}))


# -- github_actions --------------------------------------------------------------------------

async def test_github_actions_dispatches_finds_the_new_run_and_follows_it(make_bot: Any) -> None:
    github = FakeGitHub()
    async with LocalServer(github.app()) as server:
        bot = await staging_bot(make_bot, github_runner(server.url))
        await request_rollback(bot, "api staging to v1.4.2", reason="bad migration")
    [dispatch] = github.dispatches
    assert dispatch["path"] == "/repos/acme/api/actions/workflows/rollback.yml/dispatches"
    assert dispatch["ref"] == "main"
    assert dispatch["inputs"] == {"service": "api", "environment": "staging", "version": "v1.4.2",
                                  "reason": "bad migration", "ticket": "rollback-api-1"}
    assert github.list_queries[0] == {"event": "workflow_dispatch", "branch": "main", "per_page": "30"}
    [row] = await rollbacks_in_db(bot)
    assert row.status == "succeeded"
    assert row.run_url == "https://github.example/acme/api/actions/runs/500"  # not the older run 400
    message = request_message(bot)
    replies = thread(bot, message)
    for state in ("queued", "in_progress", "completed"):
        assert f"is *{state}*" in replies
    assert "<https://github.example/acme/api/actions/runs/500|#101> succeeded" in replies
    assert "View the run" in message.all_text()
    assert GITHUB_TOKEN not in everything_said(bot)


async def test_github_actions_inputs_are_mapped_renamed_and_dropped(make_bot: Any) -> None:
    # An existing workflow that declares `app` and `version` only, as the runbook's deploy workflow does.
    github = FakeGitHub(declared={"app": True, "version": True, "note": False})
    inputs = {"service": None, "environment": None, "reason": None, "app": "{service}", "version": "v-{version}",
              "note": "{reason} ({requested_by})"}
    async with LocalServer(github.app()) as server:
        bot = await staging_bot(make_bot, github_runner(server.url, inputs=inputs))
        await request_rollback(bot, "api staging to v1.4.2", reason="bad migration")
    [dispatch] = github.dispatches
    assert dispatch["inputs"] == {"app": "api", "version": "v-v1.4.2", "note": f"bad migration ({ALICE})"}
    [row] = await rollbacks_in_db(bot)
    assert row.status == "succeeded"


async def test_github_actions_unexpected_input_is_githubs_422_named_in_the_thread(make_bot: Any) -> None:
    github = FakeGitHub(declared={"app": True, "version": True})
    async with LocalServer(github.app()) as server:
        bot = await staging_bot(make_bot, github_runner(server.url, inputs={"app": "{service}"}))
        await request_rollback(bot, "api staging to v1")
    [row] = await rollbacks_in_db(bot)
    assert row.status == "failed" and github.dispatches == []
    assert ('GitHub refused the workflow dispatch (HTTP 422: Unexpected inputs provided: ["service", '
            '"environment", "reason"])') in thread(bot, request_message(bot))


def test_github_actions_null_may_only_drop_an_input_opsbot_sends() -> None:
    from bot.errors import ConfigError

    with pytest.raises(ConfigError, match="`ticket: null` drops nothing"):
        rollback_config({"api": {"environments": {"staging": github_runner("http://127.0.0.1:9",
                                                                            inputs={"ticket": None})}}})


async def test_github_actions_failed_conclusion_is_a_failed_rollback(make_bot: Any) -> None:
    github = FakeGitHub(conclusion="failure")
    async with LocalServer(github.app()) as server:
        bot = await staging_bot(make_bot, github_runner(server.url))
        await request_rollback(bot, "api staging to v1")
    [row] = await rollbacks_in_db(bot)
    assert (row.status, row.active_key) == ("failed", None)
    assert "finished with conclusion *failure*" in thread(bot, request_message(bot))
    assert [d for d in await deploys_in_db(bot) if d.source == "rollback"] == []


async def test_github_actions_wrong_token_fails_without_showing_it(make_bot: Any) -> None:
    github = FakeGitHub(token="a-different-token")
    async with LocalServer(github.app()) as server:
        bot = await staging_bot(make_bot, github_runner(server.url))
        await request_rollback(bot, "api staging to v1")
    [row] = await rollbacks_in_db(bot)
    assert row.status == "failed"
    assert github.dispatches == []
    said = everything_said(bot)
    assert "HTTP 401: Bad credentials" in said
    assert GITHUB_TOKEN not in said


async def test_github_blip_while_following_the_run_is_retried_not_a_failure(make_bot: Any) -> None:
    github = FakeGitHub()
    github.failing_reads = 2
    async with LocalServer(github.app()) as server:
        bot = await staging_bot(make_bot, github_runner(server.url))
        await request_rollback(bot, "api staging to v1.4.2")
    [row] = await rollbacks_in_db(bot)
    assert github.failing_reads == 0 and len(github.dispatches) == 1
    assert row.status == "succeeded"
    assert "succeeded" in thread(bot, request_message(bot))


async def test_github_actions_unset_token_variable_is_named_not_guessed(make_bot: Any,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROLLBACK_TEST_GH_TOKEN")
    github = FakeGitHub()
    async with LocalServer(github.app()) as server:
        bot = await staging_bot(make_bot, github_runner(server.url))
        await request_rollback(bot, "api staging to v1")
    assert (await rollbacks_in_db(bot))[0].status == "failed"
    assert "environment variable ROLLBACK_TEST_GH_TOKEN is not set" in thread(bot, request_message(bot))


async def test_github_actions_run_that_never_completes_times_out(make_bot: Any) -> None:
    github = FakeGitHub()
    async with LocalServer(github.app()) as server:
        github.conclusion = "success"
        bot = await staging_bot(make_bot, github_runner(server.url, timeout="10ms", poll_interval="50ms"))
        await request_rollback(bot, "api staging to v1")
    [row] = await rollbacks_in_db(bot)
    assert row.status == "failed" and row.active_key is None
    replies = thread(bot, request_message(bot))
    assert "no workflow run appeared in time" in replies or "did not complete within" in replies


async def test_github_api_down_is_a_provider_failure(make_bot: Any) -> None:
    github = FakeGitHub()
    server = await LocalServer(github.app()).start()
    url = server.url
    await server.stop()
    bot = await staging_bot(make_bot, github_runner(url))
    await request_rollback(bot, "api staging to v1")
    assert (await rollbacks_in_db(bot))[0].status == "failed"
    assert "The GitHub API is unreachable (ConnectError)" in thread(bot, request_message(bot))


# -- webhook -----------------------------------------------------------------------------------

async def test_webhook_is_signed_and_retried_after_a_5xx(make_bot: Any) -> None:
    receiver = WebhookReceiver(fail_first=1)
    async with LocalServer(receiver.app()) as server:
        bot = await staging_bot(make_bot, webhook_runner(server.url))
        await request_rollback(bot, "api staging to v2.0.1", reason="memory leak")
    assert receiver.bad_signatures == 0 and receiver.attempts == 2
    [body] = receiver.accepted
    assert {k: body[k] for k in ("rollback_id", "service", "environment", "version", "reason", "requested_by")} == {
        "rollback_id": 1, "service": "api", "environment": "staging", "version": "v2.0.1", "reason": "memory leak",
        "requested_by": ALICE}
    first, second = receiver.headers
    assert first["x-opsbot-delivery"] == second["x-opsbot-delivery"]  # one delivery id across retries
    assert second["x-opsbot-signature"].startswith("sha256=")
    [row] = await rollbacks_in_db(bot)
    assert row.status == "succeeded"
    replies = thread(bot, request_message(bot))
    assert "Webhook attempt 1 failed (HTTP 503: deploy system busy); retrying (2/3)" in replies
    assert WEBHOOK_SECRET not in everything_said(bot)


async def test_webhook_signed_with_another_secret_is_refused_and_not_retried(make_bot: Any) -> None:
    receiver = WebhookReceiver(secret="the-receivers-secret")
    async with LocalServer(receiver.app()) as server:
        bot = await staging_bot(make_bot, webhook_runner(server.url))
        await request_rollback(bot, "api staging to v1")
    assert receiver.bad_signatures == 1 and receiver.attempts == 1 and receiver.accepted == []
    assert (await rollbacks_in_db(bot))[0].status == "failed"
    assert "refused the request (HTTP 401: bad signature)" in thread(bot, request_message(bot))


async def test_webhook_failing_every_time_gives_up_after_the_retries(make_bot: Any) -> None:
    receiver = WebhookReceiver(fail_first=10)
    async with LocalServer(receiver.app()) as server:
        bot = await staging_bot(make_bot, webhook_runner(server.url))
        await request_rollback(bot, "api staging to v1")
    assert receiver.attempts == 3
    assert (await rollbacks_in_db(bot))[0].status == "failed"
    assert "failed after 3 attempt(s) (HTTP 503" in thread(bot, request_message(bot))


async def test_webhook_status_url_is_followed_to_a_terminal_state(make_bot: Any) -> None:
    receiver = WebhookReceiver(states=["running", "running", "succeeded"])
    async with LocalServer(receiver.app()) as server:
        runner = webhook_runner(server.url, status_url=f"{server.url}/status/{{rollback_id}}")
        bot = await staging_bot(make_bot, runner)
        await request_rollback(bot, "api staging to v1")
    assert receiver.status_reads == 3
    [row] = await rollbacks_in_db(bot)
    assert (row.status, row.run_url) == ("succeeded", "https://deploy.example/runs/7")
    replies = thread(bot, request_message(bot))
    assert "Status: *running*: step 1" in replies and "reports *succeeded*" in replies


async def test_webhook_status_reporting_failure_fails_the_rollback(make_bot: Any) -> None:
    receiver = WebhookReceiver(states=["running", "failed"])
    async with LocalServer(receiver.app()) as server:
        runner = webhook_runner(server.url, status_url=f"{server.url}/status/{{rollback_id}}")
        bot = await staging_bot(make_bot, runner)
        await request_rollback(bot, "api staging to v1")
    assert (await rollbacks_in_db(bot))[0].status == "failed"
    assert "reports *failed*: step 2" in thread(bot, request_message(bot))


# -- command -----------------------------------------------------------------------------------

async def test_command_gets_validated_values_as_separate_arguments(make_bot: Any, tmp_path: Path) -> None:
    runner = command_runner(tmp_path, "import json; print(json.dumps(sys.argv[1:]))\n")
    bot = await staging_bot(make_bot, runner)
    await request_rollback(bot, "api staging to v1", reason="it's $(broken); rm -rf / `x`")
    [row] = await rollbacks_in_db(bot)
    assert row.status == "succeeded"
    assert json.loads(row.output or "") == ["api", "staging", "v1", "--reason=it's $(broken); rm -rf / `x`"]


async def test_stuck_command_is_killed_at_its_timeout(make_bot: Any, tmp_path: Path) -> None:
    runner = command_runner(tmp_path, "print('starting', flush=True)\ntime.sleep(60)\n", timeout="500ms")
    bot = await staging_bot(make_bot, runner)
    await request_rollback(bot, "api staging to v1")
    [row] = await rollbacks_in_db(bot)
    assert (row.status, row.active_key) == ("failed", None)
    replies = thread(bot, request_message(bot))
    assert "did not finish within 500ms and was killed" in replies
    assert "starting" in replies


async def test_missing_program_is_a_provider_failure(make_bot: Any, tmp_path: Path) -> None:
    bot = await staging_bot(make_bot, {"provider": "command", "argv": [str(tmp_path / "no-such-tool"), "{version}"]})
    await request_rollback(bot, "api staging to v1")
    assert (await rollbacks_in_db(bot))[0].status == "failed"
    assert "Could not start" in thread(bot, request_message(bot))


async def test_webhook_connection_errors_are_retried_then_reported(make_bot: Any) -> None:
    server = await LocalServer(WebhookReceiver().app()).start()
    url = server.url
    await server.stop()  # nothing listens there any more
    bot = await staging_bot(make_bot, webhook_runner(url, retries=1))
    await request_rollback(bot, "api staging to v1")
    assert (await rollbacks_in_db(bot))[0].status == "failed"
    replies = thread(bot, request_message(bot))
    assert "retrying (2/2)" in replies and "failed after 2 attempt(s) (connection failed: ConnectError)" in replies


async def test_long_command_output_is_cut_for_the_thread_and_the_database(make_bot: Any, tmp_path: Path) -> None:
    runner = command_runner(tmp_path, "print('first line')\nprint('x' * 50000)\nprint('last line')\n")
    bot = await staging_bot(make_bot, runner)
    await request_rollback(bot, "api staging to v1")
    [row] = await rollbacks_in_db(bot)
    assert row.status == "succeeded"
    assert row.output is not None and len(row.output) <= 20_000
    assert row.output.startswith("…(cut)…") and row.output.rstrip().endswith("last line")
    [output] = [m for m in bot.messages("#ops") if m.thread_ts and m.text.startswith("Output:")]
    assert "earlier output cut" in output.text and len(output.text) < 3000 and "last line" in output.text
