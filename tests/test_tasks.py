"""Background work: failures reported, acks first during bursts, nothing starves, shutdown drains."""

from __future__ import annotations

import asyncio

from bot.errors import InvalidInput
from bot.tasks import BackgroundTasks


async def test_failures_are_reported_to_the_on_error_callback() -> None:
    tasks = BackgroundTasks()
    seen: list[str] = []

    async def boom() -> None:
        raise InvalidInput("bad input")

    async def report(exc: BaseException) -> None:
        seen.append(str(exc))

    tasks.spawn(boom(), name="t", on_error=report)
    assert await tasks.wait_idle(timeout=2)
    assert seen == ["bad input"]


async def test_during_a_burst_only_a_few_background_tasks_start_and_the_rest_follow() -> None:
    tasks = BackgroundTasks(max_running=64, max_running_under_load=2, quiet_after=0.01)
    running = 0
    peak = 0
    release = asyncio.Event()

    async def work() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1

    tasks.foreground_started()  # a Slack request is being answered
    for _ in range(10):
        tasks.spawn(work(), name="w")
    await asyncio.sleep(0.05)
    assert running == 2  # acks keep the loop; two background tasks make progress
    tasks.foreground_finished()
    await asyncio.sleep(0.05)  # past the quiet window: the rest start
    assert running == 10
    release.set()
    assert await tasks.wait_idle(timeout=2)
    assert peak == 10


async def test_drain_finishes_in_flight_work_and_cancels_what_overruns() -> None:
    tasks = BackgroundTasks()
    done: list[str] = []

    async def quick() -> None:
        await asyncio.sleep(0.01)
        done.append("quick")

    async def stuck() -> None:
        await asyncio.Event().wait()

    tasks.spawn(quick(), name="quick")
    tasks.spawn(stuck(), name="stuck")
    cancelled = await tasks.drain(timeout=0.5)
    assert done == ["quick"] and cancelled == 1 and not tasks.accepting


async def test_urgent_work_starts_during_a_burst() -> None:
    """Opening a modal cannot wait for the burst to pass: its trigger_id expires after 3 s."""
    tasks = BackgroundTasks(max_running_under_load=1, quiet_after=10)
    started: list[str] = []
    hold = asyncio.Event()

    async def work(name: str) -> None:
        started.append(name)
        await hold.wait()

    tasks.foreground_started()
    tasks.spawn(work("slow"), name="slow")
    tasks.spawn(work("queued"), name="queued")
    tasks.spawn(work("modal"), name="modal", urgent=True)
    await asyncio.sleep(0.05)
    assert started == ["slow", "modal"]
    tasks.foreground_finished()
    hold.set()
    await tasks.drain(timeout=2)
