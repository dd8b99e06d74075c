"""bot/shared_reads.py: a read answers a request only when it started after the request was made."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from bot.shared_reads import SharedReads


def counted(outcome: str) -> float:
    """opsbot_reads_total for the key "prod" (this process's registry: the tests set no multiprocess dir)."""
    return REGISTRY.get_sample_value("opsbot_reads_total", {"what": "prod", "outcome": outcome}) or 0.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Source:
    """A read that counts its calls and waits until released."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.fail: Exception | None = None

    async def __call__(self) -> str:
        self.calls += 1
        number = self.calls
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return f"read {number}"


async def test_requests_made_before_a_read_started_share_it() -> None:
    clock, source = Clock(), Source()
    reads = SharedReads(clock)
    shared, made = counted("shared"), counted("read")
    asked = clock.now
    clock.now += 1
    waiting = [asyncio.create_task(reads.read("prod", source, asked_at=asked)) for _ in range(5)]
    await asyncio.sleep(0)
    source.release.set()
    assert await asyncio.gather(*waiting) == ["read 1"] * 5
    assert source.calls == 1 and counted("shared") == shared + 4 and counted("read") == made + 1


async def test_a_request_made_after_a_read_started_gets_a_read_of_its_own() -> None:
    clock, source = Clock(), Source()
    reads = SharedReads(clock)
    first = asyncio.create_task(reads.read("prod", source, asked_at=clock.now - 1))
    await asyncio.sleep(0)
    clock.now += 1  # asked after the first read started: it may have missed a change
    second = asyncio.create_task(reads.read("prod", source, asked_at=clock.now))
    await asyncio.sleep(0)
    source.release.set()
    assert await first == "read 1" and await second == "read 2"


async def test_a_finished_read_answers_requests_made_before_it_started_only() -> None:
    clock, source = Clock(), Source()
    source.release.set()
    reads = SharedReads(clock)
    asked = clock.now
    clock.now += 1
    assert await reads.read("prod", source, asked_at=asked) == "read 1"
    clock.now += 4
    assert await reads.read("prod", source, asked_at=asked) == "read 1"  # a queued job, asked long ago
    assert await reads.read("prod", source, asked_at=clock.now) == "read 2"  # asked after it started
    assert await reads.read("staging", source, asked_at=asked) == "read 3"  # another key
    assert source.calls == 3


async def test_a_finished_read_is_taken_only_while_it_is_fresh() -> None:
    clock, source = Clock(), Source()
    source.release.set()
    reads = SharedReads(clock, keep=5)
    asked = clock.now
    clock.now += 1
    assert await reads.read("prod", source, asked_at=asked) == "read 1"
    clock.now += 5
    assert await reads.read("prod", source, asked_at=asked) == "read 1"  # finished 5 s ago: still fresh
    clock.now += 0.1
    assert await reads.read("prod", source, asked_at=asked) == "read 2"  # older than that: read again


async def test_the_same_instant_does_not_share_and_no_time_never_shares() -> None:
    clock, source = Clock(), Source()
    source.release.set()
    reads = SharedReads(clock)
    assert await reads.read("prod", source, asked_at=clock.now) == "read 1"
    assert await reads.read("prod", source, asked_at=clock.now) == "read 2"
    assert await reads.read("prod", source, asked_at=None) == "read 3"
    assert await reads.read("prod", source, asked_at=None) == "read 4"


async def test_a_failed_read_fails_the_requests_that_joined_it_and_is_not_kept() -> None:
    clock, source = Clock(), Source()
    reads = SharedReads(clock)
    asked = clock.now
    clock.now += 1
    source.fail = ConnectionError("target down")
    waiting = [asyncio.create_task(reads.read("prod", source, asked_at=asked)) for _ in range(3)]
    await asyncio.sleep(0)
    source.release.set()
    outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(o, ConnectionError) for o in outcomes) and source.calls == 1
    source.fail = None
    assert await reads.read("prod", source, asked_at=asked) == "read 2"  # the retry reads again


async def test_a_cancelled_request_does_not_cancel_the_read_others_wait_for() -> None:
    clock, source = Clock(), Source()
    reads = SharedReads(clock)
    asked = clock.now
    clock.now += 1
    starter = asyncio.create_task(reads.read("prod", source, asked_at=asked))
    await asyncio.sleep(0)
    joiner = asyncio.create_task(reads.read("prod", source, asked_at=asked))
    await asyncio.sleep(0)
    starter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starter
    source.release.set()
    assert await joiner == "read 1"
    clock.now += 1
    assert await reads.read("prod", source, asked_at=asked) == "read 1"  # and it was kept
