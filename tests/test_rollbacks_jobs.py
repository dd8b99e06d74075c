"""Rollbacks as named jobs: a step run again after its worker died has no second effect — the provider runs
at most once per rollback — and a step that fails for good is told to whoever asked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.emulator.harness import BotHarness
from bot.rollbacks import flows
from commands.rollback.ids import Ids
from tests.test_rollbacks_support import (
    ALICE,
    BOB,
    audit_actions,
    command_runner,
    open_modal,
    request_message,
    rollback_config,
    rollbacks_in_db,
    submit,
    thread,
)


@pytest.fixture
def config(tmp_path: Path) -> Any:
    return rollback_config({"api": {"environments": {"staging": command_runner(tmp_path, approvals=1)}}})


async def pending(bot: BotHarness) -> int:
    view = await open_modal(bot, "api staging to v1", user=ALICE)
    await submit(bot, view, user=ALICE)
    [row] = await rollbacks_in_db(bot)
    assert row.status == "pending_approval"
    return row.id


async def test_a_run_whose_start_was_recorded_does_not_run_the_provider_again(
        bot: BotHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    rollback_id = await pending(bot)
    queued: list[int] = []

    async def no_run(_deps: Any, rollback_id: int) -> None:
        queued.append(rollback_id)

    monkeypatch.setattr(flows, "start", no_run)
    await bot.click(Ids.APPROVE, str(rollback_id), user=BOB, message=request_message(bot))
    assert queued == [rollback_id]
    monkeypatch.undo()
    # A worker recorded the start, then died before (or while) running the provider.
    assert await flows._claim_run(bot.deps, rollback_id, "command") is not None
    await flows.start(bot.deps, rollback_id)  # its job, run again
    await bot.settle()
    [row] = await rollbacks_in_db(bot)
    assert row.status == "running"  # left for the lost-run sweep, as after a restart
    assert "rolling back api staging v1" not in thread(bot, request_message(bot))
    assert [a for _, a, _ in await audit_actions(bot)].count("rollback.start") == 1


async def test_the_run_is_queued_once_however_often_the_approval_runs(bot: BotHarness) -> None:
    rollback_id = await pending(bot)
    await bot.click(Ids.APPROVE, str(rollback_id), user=BOB, message=request_message(bot))
    await flows.start(bot.deps, rollback_id)  # the approval's job run again: the run is not queued twice
    await bot.settle()
    [row] = await rollbacks_in_db(bot)
    assert row.status == "succeeded"
    assert thread(bot, request_message(bot)).count("rolling back api staging v1") == 1
    assert [a for _, a, _ in await audit_actions(bot)].count("rollback.start") == 1


async def test_an_approval_that_fails_for_good_is_told_to_the_approver(
        bot: BotHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    rollback_id = await pending(bot)

    async def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(flows, "approve_row", broken)
    await bot.click(Ids.APPROVE, str(rollback_id), user=BOB, message=request_message(bot))
    assert any("Something went wrong on opsbot's side" in t for t in bot.ephemeral_texts())
    [row] = await rollbacks_in_db(bot)
    assert (row.status, row.approved_by) == ("pending_approval", [])
