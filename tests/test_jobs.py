"""The job queue itself (bot/jobs.py, bot/queue.py) on the backend under test: procrastinate on PostgreSQL,
in-process on SQLite. Jobs registered here have names starting with `test_jobs.`; their effects are
recorded in `SEEN`, in this process (the harness runs the worker in the test's own process)."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections import defaultdict
from typing import Any

import pytest

from bot import jobs
from bot.deps import Deps
from bot.emulator.harness import BotHarness, running_bot
from bot.errors import DependencyDown, InvalidInput
from bot.jobs import UnknownJob, job
from bot.queue import ONCE
from commands.common import GENERIC_FAILURE
from tests.conftest import load_test_config
from tests.tcpproxy import TcpProxy
from tests.test_alerts_replicas import eventually

SEEN: defaultdict[str, list[Any]] = defaultdict(list)  # what each test job did, by a key of the test's choosing
GATES: dict[str, asyncio.Event] = {}


@pytest.fixture(autouse=True)
def _fresh() -> None:
    SEEN.clear()
    GATES.clear()


@job("test_jobs.record")
async def record(deps: Deps, *, key: str, value: Any) -> None:
    SEEN[key].append(value)


@job("test_jobs.locked", lock="thing:{thing}")
async def locked(deps: Deps, *, thing: str, number: int) -> None:
    SEEN["events"].append(("start", thing, number, time.monotonic()))
    await asyncio.sleep(0.15)
    SEEN["events"].append(("end", thing, number, time.monotonic()))


@job("test_jobs.flaky", retries=3)
async def flaky(deps: Deps, *, key: str, failures: int) -> None:
    SEEN[key].append(time.monotonic())
    if len(SEEN[key]) <= failures:
        raise DependencyDown("the target did not answer")


@job("test_jobs.broken", retries=1)
async def broken(deps: Deps, *, user: str, channel: str | None, response_url: str | None) -> None:
    SEEN["broken"].append(time.monotonic())
    raise ConnectionResetError("the target hung up")


@job("test_jobs.refused", retries=3)
async def refused(deps: Deps, *, user: str, channel: str | None, response_url: str | None) -> None:
    SEEN["refused"].append(time.monotonic())
    raise InvalidInput("`frob` is not a thing opsbot can do")


@job("test_jobs.gated", lock="gate:{gate}")
async def gated(deps: Deps, *, gate: str) -> None:
    SEEN["gated"].append(gate)
    await GATES[gate].wait()


RUNNING: list[int] = [0, 0]  # jobs of test_jobs.crowded running now, the most at once


@job("test_jobs.crowded")
async def crowded(deps: Deps, *, n: int) -> None:
    RUNNING[0] += 1
    RUNNING[1] = max(RUNNING)
    try:
        await GATES["crowd"].wait()
    finally:
        RUNNING[0] -= 1


def metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        found = re.fullmatch(rf"{name}(?:\{{(.*)\}})? ([0-9.e+-]+)", line)
        if found and ",".join(sorted((found.group(1) or "").split(","))) == wanted:
            return float(found.group(2))
    return 0.0


async def metrics_text(bot: BotHarness) -> str:
    assert bot.http is not None
    return (await bot.http.get("/metrics")).text


async def job_count(bot: BotHarness, name: str, outcome: str) -> float:
    return metric(await metrics_text(bot), "opsbot_jobs_total", job=name, outcome=outcome)


def response_url(bot: BotHarness) -> str:
    return bot.requests.response_url()


# -- the registry ----------------------------------------------------------------------------------

async def test_an_unknown_job_name_lists_the_valid_ones(bot: BotHarness) -> None:
    with pytest.raises(UnknownJob) as raised:
        await bot.deps.queue.defer("test_jobs.nope", {})
    assert "no job named 'test_jobs.nope'" in str(raised.value)
    assert "test_jobs.record" in str(raised.value) and "deploys.list" in str(raised.value)


def test_a_lock_template_must_name_keyword_arguments_of_the_job() -> None:
    with pytest.raises(ValueError, match="not an argument name"):
        jobs.Registry().job("x.y", lock="incident:{incident-id}")
    with pytest.raises(ValueError, match=r"needs keyword-only argument.*incident_id"):
        @jobs.Registry().job("x.y", lock="incident:{incident_id}")
        async def wrong(deps: Deps, *, incident: int) -> None: ...
    with pytest.raises(ValueError, match="two jobs named"):
        registry = jobs.Registry()
        registry.job("x.y")(record)
        registry.job("x.y")(locked)


async def test_job_arguments_must_be_plain_json(bot: BotHarness) -> None:
    with pytest.raises(TypeError, match="plain JSON"):
        await bot.deps.queue.defer("test_jobs.record", {"key": "k", "value": object()})
    assert not SEEN


# -- locks -----------------------------------------------------------------------------------------

async def test_same_lock_jobs_run_one_at_a_time_in_order_and_other_locks_in_parallel(bot: BotHarness) -> None:
    for number in range(3):
        for thing in ("a", "b"):
            await bot.deps.queue.defer("test_jobs.locked", {"thing": thing, "number": number})
    await bot.settle(timeout=15)
    events = SEEN["events"]
    for thing in ("a", "b"):
        mine = [(kind, number) for kind, t, number, _ in events if t == thing]
        assert mine == [("start", 0), ("end", 0), ("start", 1), ("end", 1), ("start", 2), ("end", 2)]
    # a's and b's jobs overlapped: the locks are per object, not global.
    spans = {(t, n): [at for kind, tt, nn, at in events if (tt, nn) == (t, n)] for _, t, n, _ in events}
    assert any(spans[("a", n)][0] < spans[("b", m)][1] and spans[("b", m)][0] < spans[("a", n)][1]
               for n in range(3) for m in range(3))


# -- retries and final failures --------------------------------------------------------------------

async def test_a_transient_failure_is_retried_with_backoff_then_succeeds(bot: BotHarness) -> None:
    await bot.deps.queue.defer("test_jobs.flaky", {"key": "flaky", "failures": 2})
    await bot.settle(timeout=20)
    runs = SEEN["flaky"]
    assert len(runs) == 3
    gaps = [later - earlier for earlier, later in itertools.pairwise(runs)]
    assert gaps[0] >= 0.9 and gaps[1] >= 1.9  # 1 s, then 2 s: exponential backoff
    assert await job_count(bot, "test_jobs.flaky", "retried") == 2
    assert await job_count(bot, "test_jobs.flaky", "done") == 1
    assert await job_count(bot, "test_jobs.flaky", "failed") == 0


async def test_a_job_failing_for_good_tells_its_requester_and_is_counted(bot: BotHarness) -> None:
    url = response_url(bot)
    await bot.deps.queue.defer("test_jobs.broken", {"user": "U0ALICE01", "channel": None, "response_url": url})
    await bot.settle(timeout=15)
    assert len(SEEN["broken"]) == 2  # retries=1: two attempts, then the requester is told
    told = [r for r in bot.slack.responses if r["token"] == url.rsplit("/", 1)[1]]
    assert len(told) == 1 and told[0]["response_type"] == "ephemeral"
    assert GENERIC_FAILURE in told[0]["text"] and "hung up" not in told[0]["text"]  # no internals leak
    text = await metrics_text(bot)
    assert metric(text, "opsbot_jobs_total", job="test_jobs.broken", outcome="failed") == 1
    assert metric(text, "opsbot_jobs_total", job="test_jobs.broken", outcome="retried") == 1


async def test_without_a_response_url_the_requester_is_told_ephemerally(bot: BotHarness) -> None:
    general = bot.slack.channel("general").id
    await bot.deps.queue.defer("test_jobs.refused", {"user": "U0BOB0001", "channel": general, "response_url": None})
    await bot.settle()
    told = [e for e in bot.slack.ephemerals if e["user"] == "U0BOB0001"]
    assert [e["channel"] for e in told] == [general]
    assert told[0]["text"] == ":warning: `frob` is not a thing opsbot can do"


async def test_a_domain_error_is_final_at_once(bot: BotHarness) -> None:
    url = response_url(bot)
    retried = await job_count(bot, "test_jobs.refused", "retried")
    failed = await job_count(bot, "test_jobs.refused", "failed")
    await bot.deps.queue.defer("test_jobs.refused", {"user": "U0ALICE01", "channel": None, "response_url": url})
    await bot.settle()
    assert len(SEEN["refused"]) == 1  # retries=3, but an OpsbotError comes out the same every time
    assert await job_count(bot, "test_jobs.refused", "retried") == retried
    assert await job_count(bot, "test_jobs.refused", "failed") == failed + 1
    assert "not a thing opsbot can do" in bot.ephemeral_texts()[-1]


# -- redelivery keys -------------------------------------------------------------------------------

async def test_a_redelivered_request_does_nothing_but_the_same_jobs_rerun_does_its_work(bot: BotHarness) -> None:
    duplicates = await job_count(bot, "test_jobs.record", "duplicate")
    for _ in range(2):  # Slack delivered the same interaction twice
        await bot.deps.queue.defer("test_jobs.record", {"key": "once", "value": 1}, once="trigger:123.abc")
    await bot.settle()
    assert SEEN["once"] == [1]
    assert await job_count(bot, "test_jobs.record", "duplicate") == duplicates + 1

    # A job re-run after its worker died (same owner) has to do its work again; another job may not.
    spec = bot.deps.queue.registry.get("test_jobs.record")
    args = {"key": "rerun", "value": 2, ONCE: "trigger:456.def"}
    await bot.deps.queue.attempt(spec, args, attempt=0, owner="job:7")
    await bot.deps.queue.attempt(spec, args, attempt=1, owner="job:7")
    await bot.deps.queue.attempt(spec, args, attempt=0, owner="job:8")
    assert SEEN["rerun"] == [2, 2]


async def test_an_event_slack_redelivers_is_answered_once(bot: BotHarness) -> None:
    general = bot.slack.channel("general").id
    said = bot.slack.call("chat.postMessage", {"channel": general, "text": "<@U0BOT0001> hi"})
    event = {"type": "app_mention", "user": "U0ALICE01", "channel": general, "text": "<@U0BOT0001> hi",
             "ts": said["ts"]}
    for retry in ("", "1"):
        signed = bot.requests.event(event, event_id="Ev0REDELIVER")
        headers = {"X-Slack-Retry-Num": retry, "X-Slack-Retry-Reason": "http_timeout"} if retry else {}
        assert (await bot.post(signed, **headers)).status_code == 200
        await bot.settle()
    replies = [m for m in bot.messages("general") if m.thread_ts == said["ts"]]
    assert len(replies) == 1


# -- depth and age in /metrics and /health ---------------------------------------------------------

async def test_queue_depth_and_oldest_age_are_in_metrics_and_health(bot: BotHarness) -> None:
    GATES["g"] = asyncio.Event()
    for _ in range(4):  # one runs and holds the lock; three wait behind it
        await bot.deps.queue.defer("test_jobs.gated", {"gate": "g"})
    deadline = time.monotonic() + 10
    while SEEN["gated"] != ["g"] and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)
    bot.deps.queue._stats = None  # the reading is cached for a couple of seconds
    assert bot.http is not None
    health = (await bot.http.get("/health")).json()["jobs"]
    assert health["backend"] == bot.deps.queue.backend
    assert health["waiting"] == 3 and health["running"] == 1 and health["oldest_seconds"] >= 0.25
    text = await metrics_text(bot)
    assert metric(text, "opsbot_queue_jobs", state="waiting") == 3
    assert metric(text, "opsbot_queue_jobs", state="running") == 1
    assert metric(text, "opsbot_queue_oldest_job_seconds") >= 0.25
    GATES["g"].set()
    await bot.settle()
    assert SEEN["gated"] == ["g"] * 4
    bot.deps.queue._stats = None
    health = (await bot.http.get("/health")).json()["jobs"]
    assert (health["waiting"], health["running"], health["oldest_seconds"]) == (0, 0, 0)


# -- through Slack ---------------------------------------------------------------------------------

async def test_converted_commands_run_as_jobs(bot: BotHarness) -> None:
    before = await job_count(bot, "deploys.list", "done")
    whoamis = await job_count(bot, "opsbot.whoami", "done")
    response = await bot.command("/deploys", "api prod")
    assert response.status_code == 200 and response.text == ""
    assert "No deploys recorded for `api` in prod" in bot.ephemeral_texts()[-1]
    await bot.command("/opsbot", "whoami")
    assert "You are <@U0ALICE01>" in bot.ephemeral_texts()[-1]
    assert await job_count(bot, "deploys.list", "done") == before + 1
    assert await job_count(bot, "opsbot.whoami", "done") == whoamis + 1


async def test_while_the_database_is_down_the_ack_says_so_and_nothing_is_queued(
        pg_via_proxy: tuple[str, TcpProxy]) -> None:
    url, proxy = pg_via_proxy
    async with running_bot(load_test_config(), url) as bot:
        await bot.command("/deploys", "api prod")  # warm: the pool has its connection
        answered = len(bot.slack.responses)
        await proxy.cut()
        started = time.monotonic()
        response = await bot.command("/deploys", "api prod", settle=False)
        took = time.monotonic() - started
        assert response.status_code == 200
        assert "could not queue this" in response.json()["text"]  # refused, or (the pool waiting) no answer
        assert took < 3.0, f"the ack took {took:.1f}s: Slack would have given up"
        await proxy.restore()
        await bot.settle(timeout=15)
        assert len(bot.slack.responses) == answered  # the refused request left no job behind
        await bot.command("/deploys", "api prod")
        assert len(bot.slack.responses) == answered + 1


async def test_a_request_queued_behind_a_stuck_insert_is_still_answered_in_time(
        pg_via_proxy: tuple[str, TcpProxy]) -> None:
    """Each request's enqueue has its own deadline: one that arrives while an earlier insert hangs on an
    unanswering database is refused within DEFER_TIMEOUT of its arrival, not after that insert's time plus
    its own (which ran past Slack's 3 s)."""
    from bot.queue import DEFER_TIMEOUT

    url, proxy = pg_via_proxy
    async with running_bot(load_test_config(), url) as bot:
        await bot.command("/deploys", "api prod")  # warm: the pool has its connection
        proxy.stall()
        first = asyncio.create_task(bot.command("/deploys", "api prod", settle=False))
        await asyncio.sleep(DEFER_TIMEOUT * 0.3)  # the first insert is in flight, hanging
        started = time.monotonic()
        second = await bot.command("/deploys", "api prod", settle=False)
        took = time.monotonic() - started
        for answer in (await first, second):  # the database may yet commit them: the ack does not say "nothing"
            assert "could not queue this" in answer.json()["text"]
            assert "did not answer in time" in answer.json()["text"]
        # 2.0 s when the machine is quiet; a clean-clone CI run with both passes side by side once took 2.7 s.
        # Without a deadline of its own the second ack waits out the rest of the first insert's too: 3.4 s.
        assert took < 2.9, f"the second ack took {took:.1f}s behind the first insert (Slack gives up at 3 s)"
        proxy.resume()


def test_a_group_commit_bundles_the_jobs_that_need_no_lock() -> None:
    from datetime import UTC, datetime

    from bot.queue import BUNDLE, BUNDLE_MAX, Row, bundled

    loose = [Row("test_jobs.record", {"key": "k", "value": i}) for i in range(BUNDLE_MAX + 2)]
    keyed = Row("test_jobs.record", {"key": "k", "value": "keyed", ONCE: "t:1"})  # a redelivery key travels along
    keep = [Row("test_jobs.locked", {"thing": "a", "number": 1}, lock="thing:a"),
            Row("test_jobs.record", {"key": "k", "value": 0}, scheduled_at=datetime.now(UTC))]
    out = bundled([keep[0], *loose, keyed, keep[1]])
    assert out[:2] == keep  # a lock (one at a time per object) or a time of its own: a row of its own
    assert [r.task_name for r in out[2:]] == [BUNDLE, BUNDLE]
    assert [len(r.args["jobs"]) for r in out[2:]] == [BUNDLE_MAX, 3]
    assert out[2].args["jobs"][0] == {"name": "test_jobs.record", "args": {"key": "k", "value": 0}}
    assert out[3].args["jobs"][-1] == {"name": "test_jobs.record", "args": keyed.args}
    assert bundled(loose[:1]) == loose[:1]  # a lone job is not wrapped


async def test_a_worker_runs_at_most_jobs_at_once_jobs_also_from_bundles(bot: BotHarness) -> None:
    """Twenty bundles of 50 at once were a thousand jobs waiting for 30 database connections, and some gave
    up (failed for good) after the pool's 10 s timeout."""
    from bot.queue import WorkerTuning

    limit = WorkerTuning().jobs_at_once
    GATES["crowd"] = asyncio.Event()
    RUNNING[:] = [0, 0]
    await asyncio.gather(*(bot.deps.queue.defer("test_jobs.crowded", {"n": i}) for i in range(limit + 60)))
    await eventually(lambda: RUNNING[0] >= min(limit, 50), "the bundles to start")
    await asyncio.sleep(0.5)  # every bundle the fetchers took has started all it may
    if bot.deps.queue.durable:
        assert RUNNING[1] == limit
    GATES["crowd"].set()
    await bot.settle(timeout=20)
    assert RUNNING[0] == 0


async def test_bundled_jobs_with_redelivery_keys_run_once_and_a_failed_one_is_retried_as_itself(
        bot: BotHarness) -> None:
    """Deferred together, jobs with a redelivery key share a bundle; a redelivery in the same group is dropped,
    and one that fails is retried on its own and still runs (its key is its own, written by its first run)."""
    await asyncio.gather(*(bot.deps.queue.defer("test_jobs.record", {"key": "keyed", "value": i}, once=f"req:{i}")
                           for i in range(10)),
                         bot.deps.queue.defer("test_jobs.record", {"key": "keyed", "value": 3}, once="req:3"),
                         bot.deps.queue.defer("test_jobs.flaky", {"key": "flaky", "failures": 1}, once="req:f"))
    await bot.settle(timeout=20)
    assert sorted(SEEN["keyed"]) == list(range(10))  # req:3 twice: its effect once
    assert len(SEEN["flaky"]) == 2  # failed once, retried as the key's owner, succeeded


async def test_jobs_deferred_together_all_run_once_and_a_bundled_failure_is_retried_on_its_own(
        bot: BotHarness) -> None:
    await asyncio.gather(*(bot.deps.queue.defer("test_jobs.record", {"key": "many", "value": i})
                           for i in range(60)),
                         bot.deps.queue.defer("test_jobs.flaky", {"key": "flaky", "failures": 1}))
    await bot.settle(timeout=20)
    assert sorted(SEEN["many"]) == list(range(60))
    assert len(SEEN["flaky"]) == 2  # failed once inside whatever carried it, then ran again and succeeded


# -- the enqueue path on PostgreSQL ----------------------------------------------------------------------

async def _connect(database_url: str) -> Any:
    """A connection of the test's own to the bot's PostgreSQL database (locks, pg_stat_activity)."""
    import psycopg

    from bot.queue import conninfo

    return await psycopg.AsyncConnection.connect(conninfo(database_url), autocommit=True)


async def _inserts_waiting(conn: Any) -> int:
    row = await (await conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        " AND query LIKE '%INSERT INTO procrastinate_jobs%'")).fetchone()
    return int(row[0])


async def test_a_defer_made_while_an_insert_commits_is_sent_at_once_not_after_it(
        bot: BotHarness, database_url: str) -> None:
    """Under load every request in flight waited for the one insert under way, and the web process idled
    (0.54× the baseline's throughput at c=50); a second statement is now in flight beside the first."""
    if not bot.deps.queue.durable:
        pytest.skip("the group insert is PostgreSQL's")
    queue = bot.deps.queue
    await queue.defer("test_jobs.record", {"key": "warm", "value": 0})
    async with await _connect(database_url) as blocker, \
            await _connect(database_url) as watcher:
        await blocker.execute("BEGIN")
        await blocker.execute("LOCK TABLE procrastinate_jobs IN SHARE MODE")  # inserts wait for it
        first = asyncio.create_task(queue.defer("test_jobs.record", {"key": "sent", "value": 1}))
        for _ in range(50):
            if await _inserts_waiting(watcher) == 1:
                break
            await asyncio.sleep(0.01)
        second = asyncio.create_task(queue.defer("test_jobs.record", {"key": "sent", "value": 2}))
        waiting = 0
        for _ in range(50):  # a second insert would have been sent within milliseconds
            waiting = await _inserts_waiting(watcher)
            if waiting == 2:
                break
            await asyncio.sleep(0.01)
        await blocker.execute("COMMIT")
        await asyncio.gather(first, second)
    assert waiting == 2, "the second defer waited for the first insert instead of being sent beside it"
    await bot.settle(timeout=20)
    assert sorted(SEEN["sent"]) == [1, 2]


async def test_an_enqueue_connection_the_database_dropped_costs_the_request_nothing(
        bot: BotHarness, database_url: str) -> None:
    """The enqueue pool checks no connection before lending it (one round trip and a third of an enqueue's
    CPU); a connection the database closed fails its statement, which is sent again on a fresh one."""
    if not bot.deps.queue.durable:
        pytest.skip("the enqueue pool is PostgreSQL's")
    queue = bot.deps.queue
    await queue.defer("test_jobs.record", {"key": "dropped", "value": 1})  # the pool has its connection
    async with await _connect(database_url) as admin:
        cur = await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = 'opsbot-enqueue'")
        assert (await cur.fetchall()), "no enqueue connection to drop"
    await queue.defer("test_jobs.record", {"key": "dropped", "value": 2})
    await bot.settle(timeout=20)
    assert sorted(SEEN["dropped"]) == [1, 2]


async def test_one_fetcher_per_worker_listens_for_new_jobs(bot: BotHarness, database_url: str) -> None:
    """Each new job's notification woke every listening fetcher, and each then asked for the one job: at c=1
    that was four fetches racing the next request's insert (p50 ack 4.6–5.0 ms against 3.2 ms with one)."""
    if not bot.deps.queue.durable:
        pytest.skip("procrastinate's fetchers are PostgreSQL's")
    await bot.deps.queue.defer("test_jobs.record", {"key": "listened", "value": 1})
    await bot.settle(timeout=20)
    assert SEEN["listened"] == [1]  # the listening fetcher took it
    async with await _connect(database_url) as admin:
        cur = await admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                  " AND application_name = 'opsbot-jobs' AND query LIKE 'LISTEN %'")
        row = await cur.fetchone()
    assert row is not None and row[0] == 1


async def test_the_enqueue_connection_is_made_at_start_not_by_the_first_request(
        bot: BotHarness, database_url: str) -> None:
    """Made by the first request, the connection took longer than its 2 s on a loaded machine (CI), and that
    request was refused."""
    if not bot.deps.queue.durable:
        pytest.skip("the enqueue pool is PostgreSQL's")
    async with await _connect(database_url) as admin:
        for _ in range(100):  # the harness's worker opens the queue as it starts
            cur = await admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                      " AND application_name = 'opsbot-enqueue'")
            row = await cur.fetchone()
            if row is not None and row[0] >= 1:
                break
            await asyncio.sleep(0.05)
    assert row is not None and row[0] >= 1, "no enqueue connection before any request"
