"""/rollback end to end with the command provider: modal, approvals in #ops, runs, refusals, timeline."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.config import Config
from bot.emulator.harness import BotHarness
from bot.emulator.localserver import LocalServer
from bot.models import Incident, IncidentEvent
from commands.rollback.ids import Ids
from commands.rollback.jobs import SlackRollbackNotifier
from tests.test_rollbacks_support import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    audit_actions,
    command_runner,
    deploys_in_db,
    last_reply,
    open_modal,
    record_deploys,
    request_message,
    request_rollback,
    rollback_config,
    rollbacks_in_db,
    submit,
    thread,
)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    runner = command_runner(tmp_path)
    return rollback_config({"api": {"environments": {"prod": runner, "staging": runner}}}, approval_timeout="30m")


async def test_staging_rollback_without_approvals_runs_and_attaches_output(bot: BotHarness) -> None:
    await record_deploys(bot, "api", "staging", "v1", "v2")
    view = await open_modal(bot, "api staging", user=BOB)
    assert "`v2`" in str(view["blocks"][0])  # the current version
    response = await submit(bot, view, user=BOB, reason="checkout errors")
    assert response.status_code == 200 and response.text == ""

    [row] = await rollbacks_in_db(bot)
    assert (row.status, row.from_version, row.to_version, row.active_key) == ("succeeded", "v2", "v1", None)
    assert row.verification == "skipped"  # staging has no health checks
    message = request_message(bot)
    assert "Rolled back" in message.all_text() and not [b for b in message.blocks if b["type"] == "actions"]
    replies = thread(bot, message)
    assert "rolling back api staging v1 --reason=checkout errors" in replies
    assert "No health checks are configured" in replies
    deploys = await deploys_in_db(bot)
    assert (deploys[-1].version, deploys[-1].source, deploys[-1].deployed_by) == ("v1", "rollback", BOB)
    actions = [a for _, a, _ in await audit_actions(bot)]
    assert [a for a in actions if a.startswith("rollback")] == ["rollback.request", "rollback.start", "rollback.finish"]
    assert any("progress in" in t for t in bot.ephemeral_texts(BOB))


async def test_empty_reason_and_bad_version_are_refused_inline(bot: BotHarness) -> None:
    await record_deploys(bot, "api", "staging", "v1", "v2")
    view = await open_modal(bot, "api staging")
    response = await submit(bot, view, reason="   ", version="v1")
    assert response.json() == {"response_action": "errors", "errors": {
        Ids.REASON_BLOCK: "Say why you are rolling back (audited and shown to approvers)."}}
    response = await submit(bot, view, reason="broken", version="v1 && reboot")
    assert set(response.json()["errors"]) == {Ids.VERSION_BLOCK}
    response = await submit(bot, view, reason="broken", version="v2")
    assert "running now" in response.json()["errors"][Ids.VERSION_BLOCK]
    assert await rollbacks_in_db(bot) == []


async def test_unknown_service_and_environment_list_the_valid_ones(bot: BotHarness) -> None:
    response = await bot.command("/rollback", "billing prod")
    assert "Unknown service `billing`. Valid services: `api`" in response.json()["text"]
    response = await bot.command("/rollback", "api qa")
    assert "Valid environments: `prod`, `staging`" in response.json()["text"]
    response = await bot.command("/rollback", "")
    assert "Usage" in response.json()["text"] and "`api`" in response.json()["text"]
    assert bot.slack.view_log == []


async def test_prod_rollback_is_refused_to_non_oncall_and_audited(bot: BotHarness) -> None:
    await bot.command("/rollback", "api prod to v1", user=BOB)
    assert bot.slack.view_log == []
    assert any("not allowed to rollback" in t and "oncall" in t for t in bot.ephemeral_texts())
    assert (BOB, "rollback", "denied") in await audit_actions(bot)


async def test_prod_approval_flow_self_approval_refused_two_approvers_run_it(bot: BotHarness) -> None:
    await record_deploys(bot, "api", "prod", "v1", "v2")
    await request_rollback(bot, "api prod")
    [row] = await rollbacks_in_db(bot)
    assert (row.status, row.approvals_required, row.to_version) == ("pending_approval", 2, "v1")
    message = request_message(bot)
    assert "Waiting for 2 more approvals" in message.all_text()

    await bot.click(Ids.APPROVE, str(row.id), user=ALICE, message=message)
    assert "cannot approve it" in last_reply(bot)
    await bot.click(Ids.APPROVE, str(row.id), user=BOB, message=message)
    assert "1/2 — <@U0BOB0001>" in message.all_text() and message.edits == 1
    await bot.click(Ids.APPROVE, str(row.id), user=BOB, message=message)
    assert "already approved" in last_reply(bot)
    [row] = await rollbacks_in_db(bot)
    assert row.status == "pending_approval" and row.approved_by == [BOB]

    await bot.click(Ids.APPROVE, str(row.id), user=CAROL, message=message)
    [row] = await rollbacks_in_db(bot)
    assert row.status == "succeeded" and row.approved_by == [BOB, CAROL]
    assert "Rolled back" in message.all_text()
    replies = thread(bot, message)
    assert "<@U0BOB0001> approved (1/2)" in replies and "<@U0CAROL01> approved (2/2)" in replies
    assert "rolling back api prod v1" in replies
    audits = await audit_actions(bot)
    assert (BOB, "rollback.approve", "ok") in audits and (CAROL, "rollback.approve", "ok") in audits


async def test_approver_without_permission_is_refused(bot: BotHarness) -> None:
    bot.slack.add_user(DAVE, "dave")
    await request_rollback(bot, "api prod to v1")
    [row] = await rollbacks_in_db(bot)
    await bot.click(Ids.APPROVE, str(row.id), user=DAVE, message=request_message(bot))
    assert "not allowed to rollback.approve" in last_reply(bot)
    [row] = await rollbacks_in_db(bot)
    assert row.approved_by == [] and row.status == "pending_approval"
    assert (DAVE, "rollback.approve", "denied") in await audit_actions(bot)


async def test_rejection_ends_the_request(bot: BotHarness) -> None:
    await request_rollback(bot, "api prod to v1")
    [row] = await rollbacks_in_db(bot)
    message = request_message(bot)
    await bot.click(Ids.REJECT, str(row.id), user=CAROL, message=message)
    [row] = await rollbacks_in_db(bot)
    assert (row.status, row.rejected_by, row.active_key) == ("rejected", CAROL, None)
    assert "Rejected by <@U0CAROL01>" in message.all_text()
    assert not [b for b in message.blocks if b["type"] == "actions"]
    await bot.click(Ids.APPROVE, str(row.id), user=BOB, message=message)
    assert "Already rejected by <@U0CAROL01>" in last_reply(bot)
    assert "nothing was changed" in thread(bot, message)


async def test_request_expires_after_the_approval_timeout(bot: BotHarness) -> None:
    await request_rollback(bot, "api prod to v1")
    [row] = await rollbacks_in_db(bot)
    message = request_message(bot)
    bot.clock.advance(minutes=29)  # type: ignore[attr-defined]
    await bot.run_job("rollbacks.expire")
    assert (await rollbacks_in_db(bot))[0].status == "pending_approval"
    bot.clock.advance(minutes=2)  # type: ignore[attr-defined]
    await bot.run_job("rollbacks.expire")
    [row] = await rollbacks_in_db(bot)
    assert (row.status, row.active_key) == ("expired", None)
    assert "Expired without enough approvals" in message.all_text()
    await bot.click(Ids.APPROVE, str(row.id), user=BOB, message=message)
    assert "already expired" in last_reply(bot)
    assert ("opsbot", "rollback.expire", "ok") in await audit_actions(bot)
    # The service is free again.
    await open_modal(bot, "api prod to v1")


async def test_a_second_rollback_of_the_same_service_is_refused_while_one_is_pending(bot: BotHarness) -> None:
    await request_rollback(bot, "api prod to v1")
    views = len(bot.slack.view_log)
    await bot.command("/rollback", "api prod to v0")
    assert len(bot.slack.view_log) == views
    assert "already waiting for approval (#1, requested by <@U0ALICE01>)" in last_reply(bot)
    # Another environment is independent.
    await request_rollback(bot, "api staging to v1")
    assert [r.status for r in await rollbacks_in_db(bot)] == ["pending_approval", "succeeded"]


async def test_two_modals_opened_before_either_submit_still_make_only_one(bot: BotHarness) -> None:
    first = await open_modal(bot, "api prod to v1")
    second = await open_modal(bot, "api prod to v0")
    await submit(bot, first)
    await submit(bot, second)
    assert len(await rollbacks_in_db(bot)) == 1
    assert "already waiting for approval" in bot.ephemeral_texts(ALICE)[-1]


async def test_failing_command_reports_failure_and_frees_the_service(bot: BotHarness, tmp_path: Path,
                                                                     make_bot: Any) -> None:
    failing = command_runner(tmp_path, "print('cannot reach registry'); sys.exit(3)\n")
    config = rollback_config({"api": {"environments": {"staging": failing}}})
    other = await make_bot(config=config)
    await request_rollback(other, "api staging to v1")
    [row] = await rollbacks_in_db(other)
    assert (row.status, row.active_key, row.verification) == ("failed", None, None)
    replies = thread(other, request_message(other))
    assert "exited with status 3" in replies and "cannot reach registry" in replies
    assert [d for d in await deploys_in_db(other) if d.source == "rollback"] == []
    assert ("opsbot", "rollback.finish", "failed") in await audit_actions(other)


async def test_rollback_from_an_incident_channel_goes_on_its_timeline(bot: BotHarness) -> None:
    channel = bot.slack.add_channel("inc-7-checkout")
    async with bot.deps.db.session() as session:
        incident = Incident(title="Checkout down", severity="P1", reporter_id=ALICE, commander_id=ALICE,
                            channel_id=channel.id, created_at=bot.clock())
        session.add(incident)
        await session.flush()
        incident_id = incident.id
    await request_rollback(bot, "api staging to v1", channel="inc-7-checkout", reason="<!channel> 5xx spike")
    async with bot.deps.db.session() as session:
        events = (await session.scalars(select(IncidentEvent).where(IncidentEvent.incident_id == incident_id)
                                        .order_by(IncidentEvent.id))).all()
    assert [e.kind for e in events] == ["rollback"] * 3
    assert "requested" in events[0].text and "succeeded" in events[-1].text
    said = "\n".join(m.all_text() for m in bot.messages("inc-7-checkout"))
    assert "requested rollback #1" in said and "Rolled back `api` in *staging* to `v1`" in said
    # The typed reason is shown, never turned into a channel-wide ping (in the incident channel or #ops).
    ops = "\n".join(str(m.blocks) + m.text for m in bot.messages("#ops"))
    assert "&lt;!channel&gt; 5xx spike" in said and "&lt;!channel&gt; 5xx spike" in ops
    assert "<!channel>" not in said + ops


async def test_ops_channel_failure_ends_the_request_instead_of_blocking_the_service(bot: BotHarness) -> None:
    bot.slack.fail("chat.postMessage", status=200, error="channel_not_found")
    await request_rollback(bot, "api prod to v1")
    [row] = await rollbacks_in_db(bot)
    assert (row.status, row.active_key) == ("failed", None)
    assert "was not started: posting to #ops failed (channel_not_found)" in bot.ephemeral_texts(ALICE)[-1]
    await open_modal(bot, "api prod to v1")


async def test_opening_the_modal_is_rate_limited(bot: BotHarness) -> None:
    for _ in range(10):
        await open_modal(bot, "api staging to v1", user=BOB)
    await bot.command("/rollback", "api staging to v1", user=BOB)
    assert "Slow down" in last_reply(bot)
    assert len(bot.slack.view_log) == 10


async def test_requester_may_withdraw_but_others_need_the_approve_permission(bot: BotHarness) -> None:
    bot.slack.add_user(DAVE, "dave")
    await request_rollback(bot, "api prod to v1")
    [row] = await rollbacks_in_db(bot)
    message = request_message(bot)
    await bot.click(Ids.REJECT, str(row.id), user=DAVE, message=message)
    assert "not allowed to rollback.approve" in last_reply(bot)
    assert (await rollbacks_in_db(bot))[0].status == "pending_approval"
    await bot.click(Ids.REJECT, str(row.id), user=ALICE, message=message)
    [row] = await rollbacks_in_db(bot)
    assert (row.status, row.rejected_by) == ("rejected", ALICE)


async def test_clicks_on_a_finished_rollback_change_nothing(bot: BotHarness) -> None:
    await request_rollback(bot, "api staging to v1")
    [row] = await rollbacks_in_db(bot)
    await bot.click(Ids.APPROVE, str(row.id), user=CAROL, message=request_message(bot))
    assert "already succeeded" in last_reply(bot)
    await bot.click(Ids.REJECT, str(row.id), user=CAROL, message=request_message(bot))
    assert "already succeeded" in last_reply(bot)
    assert (await rollbacks_in_db(bot))[0].rejected_by is None


async def test_submission_with_foreign_metadata_does_nothing(bot: BotHarness) -> None:
    view = {"id": "V0JUNK", "type": "modal", "callback_id": Ids.REQUEST, "title": {"type": "plain_text", "text": "x"},
            "blocks": []}
    for metadata in ["junk{", "0", "[]", '{"service": 1}']:
        response = await submit(bot, {**view, "private_metadata": metadata}, version="v1")
        assert response.status_code == 200
    assert await rollbacks_in_db(bot) == []


async def test_slack_timing_out_on_progress_and_updates_does_not_stop_the_rollback(
        bot: BotHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Web API timeout raises TimeoutError, not SlackApiError: losing a progress line or a message
    update must not end a rollback whose provider is running (or has succeeded) as failed."""
    async def hang(_request: Any) -> JSONResponse:
        await asyncio.sleep(1.5)
        return JSONResponse({"ok": True})

    await request_rollback(bot, "api staging to v1")
    [row] = await rollbacks_in_db(bot)
    async with LocalServer(Starlette(routes=[Route("/api/{method}", hang, methods=["POST"])])) as slow:
        monkeypatch.setattr(bot.deps, "slack", AsyncWebClient(token="xoxb-test", base_url=f"{slow.url}/api/",
                                                              timeout=1))
        notifier = SlackRollbackNotifier(bot.deps)
        await notifier.refresh(row)  # both used to raise TimeoutError out of the rollback's run
        await notifier.thread(row, "progress")
    assert row.channel and row.message_ts  # there was a message to update and a thread to post in
