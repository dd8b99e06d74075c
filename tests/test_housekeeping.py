"""Housekeeping: seen-request keys pruned after their retention, the rate limit shared through the database
(and its old buckets pruned), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select

from bot import housekeeping
from bot.clock import FakeClock
from bot.emulator.harness import BotHarness
from bot.errors import RateLimited
from bot.idempotency import first_time
from bot.models import ProcessedRequest, RateLimitBucket, WebhookDelivery
from tests.test_flags_support import ALICE, flags_config, last_text

KILL = {"checkout": {"environments": ["prod", "staging"]}}


async def keys(bot: BotHarness) -> set[str]:
    async with bot.deps.db.session() as session:
        return set((await session.scalars(select(ProcessedRequest.key))).all())


async def buckets(bot: BotHarness) -> int:
    async with bot.deps.db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(RateLimitBucket)) or 0)


async def test_processed_requests_are_pruned_after_a_day(bot: BotHarness, clock: FakeClock) -> None:
    db = bot.deps.db
    assert housekeeping.JOB in bot.deps.scheduler.jobs
    for n in range(3):
        assert await first_time(db, f"trigger:old{n}", clock=clock)
    clock.advance(hours=23)
    assert await first_time(db, "view:recent", clock=clock)
    clock.advance(hours=1, minutes=1)  # the old keys are now a day and a minute old, the recent one an hour
    await bot.run_job(housekeeping.JOB)
    assert await keys(bot) == {"view:recent"}
    assert not await first_time(db, "view:recent", clock=clock)  # still deduplicated within its retention
    clock.advance(hours=24)
    await bot.run_job(housekeeping.JOB)
    assert await keys(bot) == set()


async def test_inbound_webhook_ids_are_pruned_after_a_week(bot: BotHarness, clock: FakeClock) -> None:
    """PagerDuty redelivers a webhook for up to 48 hours: its id is kept a week, then pruned."""
    async with bot.deps.db.session() as session:
        session.add(WebhookDelivery(id="old", source="pagerduty", at=clock()))
    clock.advance(days=6)
    async with bot.deps.db.session() as session:
        session.add(WebhookDelivery(id="recent", source="pagerduty", at=clock()))
    clock.advance(days=1, minutes=1)
    await bot.run_job(housekeeping.JOB)
    async with bot.deps.db.session() as session:
        assert set((await session.scalars(select(WebhookDelivery.id))).all()) == {"recent"}


async def test_pruning_deletes_in_bounded_batches(bot: BotHarness, clock: FakeClock) -> None:
    db = bot.deps.db
    for n in range(5):
        await first_time(db, f"event:{n}", clock=clock)
    clock.advance(days=2)
    assert await housekeeping.prune_processed(db, clock=clock, batch=2, max_batches=2) == 4
    assert len(await keys(bot)) == 1  # the rest waits for the next run
    assert await housekeeping.prune_processed(db, clock=clock, batch=2, max_batches=2) == 1
    assert await keys(bot) == set()


async def test_two_instances_share_the_rate_limit(make_bot: Any, clock: FakeClock) -> None:
    one: BotHarness = await make_bot(config=flags_config(KILL))
    two: BotHarness = await make_bot(config=flags_config(KILL))  # another replica on the same database
    for n in range(10):
        await (one if n % 2 else two).command("/killswitch", "checkout on staging", user=ALICE)
        assert "Current state" in last_text(one), last_text(one)
    await one.command("/killswitch", "checkout on staging", user=ALICE)
    assert "Slow down: at most 10 `killswitch` requests per 60s. Try again in 61s." in last_text(one)
    await two.command("/killswitch", "checkout on staging", user=ALICE)
    assert "Slow down" in last_text(two)
    clock.advance(seconds=60)
    await two.command("/killswitch", "checkout on staging", user=ALICE)
    assert "Current state" in last_text(two)


async def test_rate_limit_holds_under_parallel_requests(make_bot: Any, clock: FakeClock) -> None:
    one: BotHarness = await make_bot()
    two: BotHarness = await make_bot()
    limiters = [one.deps.ratelimit, two.deps.ratelimit]

    async def attempt(n: int) -> bool:
        try:
            await limiters[n % 2].check(ALICE, "rollback")
        except RateLimited:
            return False
        return True

    results = await asyncio.gather(*(attempt(n) for n in range(16)))
    assert results.count(True) == 10
    with pytest.raises(RateLimited, match="Try again in 61s"):
        await limiters[0].check(ALICE, "rollback")
    await limiters[1].check("U0BOB0001", "rollback")  # another user has their own limit


async def test_sliding_window_and_old_buckets_are_pruned(bot: BotHarness, clock: FakeClock) -> None:
    limiter = bot.deps.ratelimit
    for _ in range(5):
        await limiter.check(ALICE, "killswitch")
    clock.advance(seconds=30)
    for _ in range(5):
        await limiter.check(ALICE, "killswitch")
    with pytest.raises(RateLimited, match="Try again in 31s"):
        await limiter.check(ALICE, "killswitch")
    clock.advance(seconds=30)  # the first five left the window, the last five have not
    for _ in range(5):
        await limiter.check(ALICE, "killswitch")
    with pytest.raises(RateLimited):
        await limiter.check(ALICE, "killswitch")
    await bot.run_job(housekeeping.JOB)
    assert await buckets(bot) == 1  # still in use
    clock.advance(seconds=61)
    await bot.run_job(housekeeping.JOB)
    assert await buckets(bot) == 0
    await limiter.check(ALICE, "killswitch")  # a pruned bucket starts empty
    assert await buckets(bot) == 1
