"""Composition root: builds the bolt app, the ASGI server and their dependencies from Settings."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

import commands
from bot import __version__, bodies, inbound, metrics, payloads, worker
from bot.clock import Clock, utcnow
from bot.config import Config, load_config
from bot.db import Database
from bot.deps import Deps, make_http_client
from bot.scheduler import Scheduler
from bot.settings import Settings
from bot.slack import SharedSessionRespond, make_client

log = logging.getLogger(__name__)


class BotIdentity:
    """auth.test, fetched once at start-up (in the background) instead of on the first request's ack path."""

    def __init__(self) -> None:
        self.user_id: str | None = None
        self.bot_id: str | None = None

    async def load(self, deps: Deps) -> None:
        for attempt in range(5):
            try:
                response = await deps.slack.auth_test()
                self.user_id, self.bot_id = response.get("user_id"), response.get("bot_id")
                return
            except Exception as exc:
                log.warning("auth.test failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(min(2**attempt, 30))


class _Context(AsyncMiddleware):
    """The one middleware: listeners get `deps` injected by name, and `respond()` over the app's keep-alive
    session instead of a new session and connection per call. A class, not a function: bolt builds the ~30
    injectable arguments for every function middleware on every request (a tenth of an ack's CPU at c=50,
    bench/ack_cost.py), and passes a class's `async_process` only what it takes."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def async_process(self, *, req: AsyncBoltRequest, resp: BoltResponse,
                            next: Callable[[], Awaitable[BoltResponse]]) -> BoltResponse:
        context = req.context
        context["deps"] = self.deps
        if context.response_url and self.deps.slack.session is not None:
            context["respond"] = SharedSessionRespond(context.response_url, self.deps.slack)
        return await next()


class OpsbotApp:
    def __init__(self, settings: Settings, config: Config, *, clock: Clock = utcnow,
                 migrate: bool = True, scheduler_lock_interval: float = 5.0, freeze_gc: bool = False,
                 role: worker.Role = worker.Role.INLINE, forked_worker: int | None = None) -> None:
        self.settings = settings
        self.role = role
        self.migrate = migrate
        self.freeze_gc = freeze_gc
        db = Database(settings.database_url.get_secret_value())
        self.deps = Deps(
            settings=settings, config=config, db=db, slack=make_client(settings), http=make_http_client(),
            # With a worker process the worker runs the jobs and the scheduled work; the web process acks.
            scheduler=Scheduler(db, enabled=settings.scheduler_enabled and role is not worker.Role.WEB,
                                lock_interval=scheduler_lock_interval),
            clock=clock,
        )
        commands.load_jobs()
        self.deps.queue.reporter = commands.failure_reporter(self.deps)
        commands.schedule_all(self.deps)
        self.identity = BotIdentity()
        # bolt warns that `client.token` is ignored when `authorize` is given; that is the intent here.
        logging.getLogger("slack_bolt.AsyncApp").addFilter(_IGNORED_TOKEN_WARNING)
        self.bolt = AsyncApp(
            client=self.deps.slack,
            signing_secret=settings.signing_secret,
            authorize=self._make_authorize(),
            # Listeners ack at once and hand slow work to deps.tasks, so bolt can answer as soon as
            # the listener returns instead of polling for the ack in 10 ms steps.
            process_before_response=True,
            # bot/inbound.py checks the signature before it parses the body (and Socket Mode has none).
            request_verification_enabled=False,
        )
        self.bolt.use(_Context(self.deps))
        commands.register_all(self.bolt)
        self.inbound = inbound.Inbound(self.bolt, settings.signing_secret,
                                       clock=self.deps.clock)
        self.worker = (worker.WorkerProcess(settings, on_exit=metrics.process_exited, forked=forked_worker)
                       if role is worker.Role.WEB else None)
        self.asgi = Starlette(routes=self._routes(), lifespan=self._lifespan)
        self._started = False
        self._db_probe: asyncio.Task[None] | None = None

    def _make_authorize(self) -> Any:
        token = self.settings.bot_token
        identity = self.identity

        async def authorize(enterprise_id: str | None, team_id: str | None) -> AuthorizeResult:
            return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token=token,
                                   bot_user_id=identity.user_id, bot_id=identity.bot_id)

        return authorize

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        deps = self.deps
        # slack_sdk applies its own timeout only to sessions it creates, so the shared one carries it.
        deps.slack.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=100),
            timeout=aiohttp.ClientTimeout(total=self.settings.slack_timeout))
        if self.migrate:
            try:
                await deps.db.upgrade()
            except Exception as exc:  # the bot still starts; /health/ready tells the operator
                log.error("database migration failed at start: %s", type(exc).__name__)
        if self.role is not worker.Role.WORKER:  # the process that serves /metrics keeps the gauge current
            await self._probe_database()
            self._db_probe = asyncio.create_task(self._probe_database_every(self.settings.db_probe_interval),
                                                 name="db-probe")
        deps.tasks.spawn(self.identity.load(deps), name="auth.test")
        await self._start_queue()
        await deps.scheduler.start()
        if self.worker is not None:
            await self.worker.start()
        if self.freeze_gc:
            # Everything built at start-up lives as long as the process: moving it out of the collector's
            # view keeps full collections (and the ack latency spikes they cause under load) short.
            gc.collect()
            gc.freeze()
        log.info("opsbot %s started: database %s (%s), Slack API %s", __version__, deps.db.display_url,
                 deps.db.url.get_backend_name(), self.settings.slack_api_url)

    async def _start_queue(self) -> None:
        queue = self.deps.queue
        try:
            if self.role is worker.Role.WEB:
                await queue.open()  # this process only enqueues
            else:
                await queue.start_worker(self.deps)
        except Exception as exc:  # the database is down: requests are answered with a clear error meanwhile
            log.error("job queue did not open: %s; requests will be refused until it does", type(exc).__name__)

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        deps = self.deps
        if self._db_probe is not None:
            self._db_probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._db_probe
            self._db_probe = None
        await deps.scheduler.shutdown()
        await deps.queue.stop_worker(timeout=10)  # PostgreSQL: what is not finished goes back to the queue
        cancelled = await deps.tasks.drain(timeout=10)
        if cancelled:
            log.warning("shutdown cancelled %d unfinished background task(s)", cancelled)
        await deps.queue.close()
        if self.worker is not None:
            await self.worker.stop()
        await deps.http.aclose()
        await deps.probes.close()
        if deps.slack.session is not None:
            await deps.slack.session.close()
            deps.slack.session = None
        await deps.db.dispose()

    @asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    # -- HTTP ---------------------------------------------------------------------------
    def _routes(self) -> list[BaseRoute]:
        return [
            Route("/slack/events", self.slack_events, methods=["POST"]),
            Route("/health", self.health, methods=["GET"]),
            Route("/health/live", self.live, methods=["GET"]),
            Route("/health/ready", self.ready, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
            *commands.routes(self.deps),
        ]

    async def slack_events(self, request: Request) -> Response:
        headers = request.headers
        content_type = headers.get("content-type", "")
        metrics.count_slack_request("event" if "json" in content_type else "form")
        tasks = self.deps.tasks
        if not tasks.accepting:
            return JSONResponse({"error": "shutting down"}, status_code=503)
        refusals = self.inbound.refusals
        try:
            body = await bodies.read_body(request, limit=inbound.MAX_BODY)
        except bodies.TooLarge as exc:
            refusals.note(413, str(exc))
            return bodies.too_large(exc)
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is left to read it
        problem = self.inbound.problem(body, headers)
        if problem is not None:
            answer = self.inbound.refusal(body, headers)
            if answer.status != 200:
                refusals.note(answer.status, problem)
            return _response(answer)
        kept = inbound.bolt_headers(headers)
        tasks.foreground_started()
        try:
            answer = await self.inbound.dispatch(body, kept)
        except payloads.Malformed as exc:
            refusals.note(400, str(exc))
            return _malformed(f"malformed request: {exc}", content_type)
        except (ValueError, LookupError, AttributeError, TypeError, RecursionError) as exc:
            # bolt indexes some fields while it builds the request (listener errors it catches itself): a
            # payload of a shape no Slack client sends that payloads.parse did not foresee.
            refusals.note(400, f"bolt could not read the payload ({type(exc).__name__})")
            return _malformed("malformed request body", content_type)
        finally:
            tasks.foreground_finished()
        return _response(answer)

    async def _probe_database(self) -> None:
        """opsbot_database_up from a cheap ping; /health/ready updates it too."""
        metrics.DB_UP.set(0 if await self.deps.db.ping() else 1)

    async def _probe_database_every(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self._probe_database()
            except Exception:  # ping reports failures as a reason; anything else must not end the probe
                log.exception("database probe failed")
                metrics.DB_UP.set(0)

    async def live(self, _request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(self, _request: Request) -> Response:
        reachable, reason = await self.deps.db.readiness()
        metrics.DB_UP.set(1 if reachable else 0)
        if reason:
            return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
        if not self.deps.tasks.accepting:
            return JSONResponse({"status": "unavailable", "reason": "shutting down"}, status_code=503)
        return JSONResponse({"status": "ready"})

    async def health(self, _request: Request) -> Response:
        reachable, reason = await self.deps.db.readiness()
        body: dict[str, Any] = {
            "status": "ok" if reason is None else "degraded",
            "version": __version__,
            "database": {"status": "ok" if reason is None else ("schema" if reachable else "down"),
                         "backend": self.deps.db.url.get_backend_name(), **({"reason": reason} if reason else {})},
            "scheduler": {"leader": await self._is_leader()},
        }
        body["jobs"] = await self._queue_stats()
        if self.worker is not None:
            body["worker"] = {"running": self.worker.running, "pid": self.worker.pid,
                              "restarts": self.worker.restarts}
        return JSONResponse(body, status_code=200 if reason is None else 503)

    async def _queue_stats(self) -> dict[str, Any]:
        queue = self.deps.queue
        try:
            stats = await queue.stats()
        except Exception as exc:
            return {"backend": queue.backend, "status": "unavailable", "reason": type(exc).__name__}
        return {"backend": queue.backend, **stats.as_dict()}

    async def _is_leader(self) -> bool:
        if self.worker is not None and self.worker.pid is not None:  # the worker process runs the scheduler
            try:
                return await self.deps.scheduler.held_by(self.worker.pid)
            except Exception:
                return False
        return self.deps.scheduler.is_leader

    async def metrics(self, _request: Request) -> Response:
        with contextlib.suppress(Exception):  # the gauges keep their last reading when the database is down
            await self.deps.queue.stats()
        content, media_type = metrics.exposition()
        return Response(content, media_type=media_type)


class _IgnoredTokenWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "will be ignored" not in message and "will be unused" not in message


_IGNORED_TOKEN_WARNING = _IgnoredTokenWarning()


def _malformed(error: str, content_type: str) -> Response:
    """400 for a signed body opsbot cannot take; an event is not redelivered (Slack retries non-2xx answers)."""
    retry = {"X-Slack-No-Retry": "1"} if "json" in content_type else {}
    return JSONResponse({"error": error}, status_code=400, headers=retry)


def _response(answer: BoltResponse) -> Response:
    return Response(answer.body, status_code=answer.status, headers=answer.first_headers_without_set_cookie())


def build(settings: Settings | None = None, config: Config | None = None, **kwargs: Any) -> OpsbotApp:
    settings = settings or Settings()
    config = config or load_config(settings.opsbot_config)
    kwargs.setdefault("scheduler_lock_interval", settings.scheduler_lock_interval)
    return OpsbotApp(settings, config, **kwargs)


def asgi() -> Starlette:
    """uvicorn's factory entry point: `uvicorn bot.app:asgi --factory`. It refuses to start without credentials
    or a config exactly as `opsbot serve` does (one process: no worker)."""
    from bot import cli, logs

    try:
        settings, config, _source = cli.server_start(socket_mode=False)
    except cli.StartRefused as exc:
        raise SystemExit("opsbot cannot start: " + "; ".join(exc.problems)) from None
    # As serve does: every record (uvicorn's too, whose handlers this replaces) through the scrubbing formatter.
    logs.configure(settings, config)
    return build(settings, config).asgi
