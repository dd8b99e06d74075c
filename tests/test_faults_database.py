"""opsbot's own database going away at start and mid-run (issue 9), through a real TCP proxy to PostgreSQL."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import select

from bot import audit
from bot.clock import FakeClock
from bot.db import Database
from bot.emulator.harness import BotHarness
from bot.errors import DependencyDown
from bot.models import AuditEntry
from bot.scheduler import Scheduler
from tests.tcpproxy import TcpProxy


async def _until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached before the deadline")


async def test_ready_is_503_with_reason_while_database_is_down_and_recovers(
        pg_via_proxy: tuple[str, TcpProxy], make_bot) -> None:  # type: ignore[no-untyped-def]
    url, proxy = pg_via_proxy
    await proxy.cut()  # down before opsbot starts
    bot: BotHarness = await make_bot(settings_overrides={"database_url": url})
    assert bot.http is not None
    ready = await bot.http.get("/health/ready")
    assert ready.status_code == 503
    assert "database unreachable" in ready.json()["reason"]
    assert (await bot.http.get("/health/live")).status_code == 200
    # Slack commands still ack: the bot is up, only its storage is not.
    # (Nothing can be queued, so there is nothing to settle: waiting would mean asking the dead database.)
    assert (await bot.command("/opsbot", "help", settle=False)).status_code == 200

    await proxy.restore()

    async def ready_again() -> bool:
        return (await bot.http.get("/health/ready")).status_code == 200  # type: ignore[union-attr]

    await _until(ready_again)


async def test_writes_fail_clearly_mid_run_and_nothing_is_lost_after_reconnect(
        pg_via_proxy: tuple[str, TcpProxy]) -> None:
    url, proxy = pg_via_proxy
    db = Database(url)
    clock = FakeClock()
    try:
        async with db.session() as session:
            await audit.record(session, clock=clock, actor="U1", action="flag", target="a")
        await proxy.cut()
        with pytest.raises(DependencyDown) as info:
            async with db.session() as session:
                await audit.record(session, clock=clock, actor="U1", action="flag", target="b")
        assert "database" in str(info.value) and "5432" not in str(info.value)
        await proxy.restore()
        # pool_pre_ping replaces the dead pooled connection: the next write just works.
        async with db.session() as session:
            await audit.record(session, clock=clock, actor="U1", action="flag", target="c")
        async with db.session() as session:
            targets = [e.target for e in (await session.scalars(select(AuditEntry).order_by(AuditEntry.id))).all()]
        assert targets == ["a", "c"]  # the failed write left nothing half-done, the others are intact
    finally:
        await db.dispose()


async def test_only_one_scheduler_leads_and_shutdown_releases_the_lock(
        pg_via_proxy: tuple[str, TcpProxy]) -> None:
    url, _proxy = pg_via_proxy
    first_db, second_db = Database(url), Database(url)
    first = Scheduler(first_db, lock_interval=0.1)
    second = Scheduler(second_db, lock_interval=0.1)
    try:
        await first.start()
        await second.start()
        assert first.is_leader and not second.is_leader
        await first.shutdown()  # graceful: releases the advisory lock at once

        async def second_leads() -> bool:
            return second.is_leader

        await _until(second_leads, timeout=5)
    finally:
        await first.shutdown()
        await second.shutdown()
        await first_db.dispose()
        await second_db.dispose()


async def test_leader_that_loses_its_database_steps_down(pg_via_proxy: tuple[str, TcpProxy]) -> None:
    url, proxy = pg_via_proxy
    db = Database(url)
    scheduler = Scheduler(db, lock_interval=0.1)
    ran: list[int] = []

    async def job() -> None:
        ran.append(1)

    from datetime import timedelta

    scheduler.every("probe", timedelta(seconds=1), job)
    try:
        await scheduler.start()
        assert scheduler.is_leader
        await proxy.cut()

        async def stepped_down() -> bool:
            return not scheduler.is_leader

        await _until(stepped_down, timeout=5)
        await proxy.restore()

        async def leads_again() -> bool:
            return scheduler.is_leader

        await _until(leads_again, timeout=5)
    finally:
        await scheduler.shutdown()
        await db.dispose()


async def test_commands_answer_clearly_while_the_database_is_down(
        pg_via_proxy: tuple[str, TcpProxy], make_bot) -> None:  # type: ignore[no-untyped-def]
    url, proxy = pg_via_proxy
    bot: BotHarness = await make_bot(settings_overrides={"database_url": url})
    await proxy.cut()
    # Nothing can be queued, so there is nothing to wait for (and waiting would mean asking the dead database).
    response = await bot.command("/incident", "list", settle=False)
    assert response.status_code == 200  # acked: the job could not be stored, and the ack says so
    assert "could not queue this" in response.json()["text"]
    await proxy.restore()
    await bot.command("/incident", "open P2 Checkout is slow")
    assert any("Checkout is slow" in m.all_text() for m in bot.messages("incidents"))
    await bot.command("/incident", "list")
    assert "Checkout is slow" in bot.ephemeral_texts()[-1]


async def test_database_cut_while_declaring_records_what_slack_made_once_it_is_back(
        pg_via_proxy: tuple[str, TcpProxy], make_bot) -> None:  # type: ignore[no-untyped-def]
    from bot.models import Incident

    url, proxy = pg_via_proxy
    bot: BotHarness = await make_bot(settings_overrides={"database_url": url})
    gate = bot.slack.hold("conversations.create")  # the incident is stored; its Web API calls are in flight
    general = bot.slack.channel("general")
    signed = bot.requests.command("/incident", "open P2 Checkout is slow", channel=general.id,
                                  channel_name=general.name)
    assert (await bot.post(signed)).status_code == 200

    async def held() -> bool:
        return bot.slack.held == ["conversations.create"]

    await _until(held)
    await proxy.cut()
    gate.set()

    async def slack_done() -> bool:  # everything Slack does needs no database: it all happens meanwhile
        channel = bot.slack.find_channel("inc-1-checkout-is-slow")
        return channel is not None and any(m.pinned for m in channel.messages)

    await _until(slack_done)
    assert bot.ephemeral_texts() == []  # no answer yet: it would have to be "declared" and "failed" at once
    await proxy.restore()
    await bot.settle(timeout=30)

    channel = bot.slack.channel("inc-1-checkout-is-slow")
    [announcement] = bot.messages("incidents")
    [summary] = [m for m in channel.messages if m.pinned]
    async with bot.deps.db.session() as session:
        [incident] = (await session.scalars(select(Incident))).all()
    assert (incident.channel_id, incident.announcement_ts, incident.summary_ts) == (
        channel.id, announcement.ts, summary.ts)
    [answer] = bot.ephemeral_texts()  # one answer, and a true one
    assert f"Declared *INC-1* (P2) <#{channel.id}>" in answer and "unreachable" not in answer

    # The same request again (Slack's retry, a second click's replay) finds the incident: nothing new.
    await bot.post(signed, **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    await bot.settle()
    async with bot.deps.db.session() as session:
        assert len((await session.scalars(select(Incident))).all()) == 1
    assert len(bot.messages("incidents")) == 1
    assert [c.name for c in bot.slack.channels.values() if c.name.startswith("inc-")] == ["inc-1-checkout-is-slow"]
    assert len(bot.ephemeral_texts()) == 1


async def test_a_session_that_waits_too_long_for_a_pooled_connection_is_a_retryable_dependency_error(
        database_url: str) -> None:
    """Every pooled connection busy for the pool's timeout: the job is retried (DependencyDown), not failed for
    good as an unexpected error (a burst of bundled jobs hit this)."""
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    db = Database(database_url)
    await db.engine.dispose()
    db.engine = create_async_engine(db.url, pool_size=1, max_overflow=0, pool_timeout=0.2)
    db.sessions = async_sessionmaker(db.engine, expire_on_commit=False)
    try:
        async with db.session() as holding:
            await holding.execute(select(1))
            with pytest.raises(DependencyDown, match="connections are all busy"):
                async with db.session() as waiting:
                    await waiting.execute(select(1))
            with pytest.raises(DependencyDown, match="connections are all busy"):
                async with db.connection() as waiting_too:
                    await waiting_too.execute(select(1))
    finally:
        await db.dispose()
