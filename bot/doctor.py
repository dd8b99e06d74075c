"""`opsbot doctor`: a pre-flight for a real deployment, read-only from start to end.

Each finding is one line, ✅ / ⚠️ / ❌, with the fix when there is something to fix: the settings, the bot token
(`auth.test`) and its scopes (Slack's `x-oauth-scopes` header) against manifest.yml's, the configured channels
and the bot's membership, the @handles the config names, every `${VAR}`, opsbot's database and its migration
revision, each target (a GET/HEAD of a health URL, a TCP connect for tcp/postgres checks and stores; never a
write) and, with `--url`, the public URL answering Slack's `ssl_check`. Any ❌ makes the exit code 1."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml

from bot.config import Config, missing_env
from bot.config.flags import HttpFlagStore, PostgresFlagStore
from bot.config.health import HttpCheck, PostgresCheck, RateLimitCheck, TcpCheck
from bot.config.secrets import EnvRef, EnvUrl
from bot.errors import ConfigError
from bot.secrets import Scrubber
from bot.settings import Settings

MANIFEST = (Path(__file__).resolve().parent / "data" / "manifest.yml").resolve()
TIMEOUT = 3.0  # seconds per probe: a pre-flight, not a load test
HANDLE = re.compile(r"^@[A-Za-z0-9][A-Za-z0-9._-]*$")
CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{6,}$")
READ_ONLY = ("GET", "HEAD", "OPTIONS")
OTHER_TARGETS = ("rollbacks.", "rollback.", "paging.", "alerts.", "actions.", "status_page.")
MAX_PAGES = 50


class Mark(StrEnum):
    OK = "✅"
    WARN = "⚠️"
    FAIL = "❌"


@dataclass(frozen=True)
class Finding:
    mark: Mark
    what: str
    fix: str = ""

    def line(self) -> str:
        return f"{self.mark} {self.what}" + (f" — {self.fix}" if self.fix else "")


def render(findings: list[Finding]) -> str:
    fails = sum(f.mark is Mark.FAIL for f in findings)
    warns = sum(f.mark is Mark.WARN for f in findings)
    summary = (f"{fails} problem(s), {warns} warning(s)" if fails or warns else "everything checked is ready")
    return "\n".join([*(f.line() for f in findings), "", summary])


def exit_code(findings: list[Finding]) -> int:
    return 1 if any(f.mark is Mark.FAIL for f in findings) else 0


def manifest_scopes(path: Path = MANIFEST) -> list[str]:
    """The bot scopes manifest.yml asks for (shipped in the wheel as bot/data/manifest.yml)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return [str(s) for s in ((data.get("oauth_config") or {}).get("scopes") or {}).get("bot") or []]


class SlackAnswer(Exception):
    def __init__(self, method: str, error: str, needed: str = "") -> None:
        super().__init__(f"{method}: {error}")
        self.method, self.error, self.needed = method, error, needed


@dataclass
class Slack:
    """Read-only Web API calls with the bot token (form bodies, cursors followed, one wait on a 429)."""

    http: httpx.AsyncClient
    api_url: str
    token: str

    async def call(self, method: str, **params: str) -> tuple[dict[str, Any], httpx.Headers]:
        for _attempt in range(2):
            response = await self.http.post(self.api_url + method, data=params,
                                            headers={"Authorization": f"Bearer {self.token}"})
            if response.status_code == 429:
                await asyncio.sleep(min(5.0, float(response.headers.get("retry-after", "1") or 1)))
                continue
            if response.status_code != 200:
                raise SlackAnswer(method, f"HTTP {response.status_code}")
            data = response.json()
            if not data.get("ok"):
                raise SlackAnswer(method, str(data.get("error", "unknown error")), str(data.get("needed", "")))
            return data, response.headers
        raise SlackAnswer(method, "ratelimited")

    async def every(self, method: str, key: str, **params: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = ""
        for _page in range(MAX_PAGES):
            data, _ = await self.call(method, **params, **({"cursor": cursor} if cursor else {}))
            items += data.get(key) or []
            cursor = str((data.get("response_metadata") or {}).get("next_cursor") or "")
            if not cursor:
                break
        return items


@dataclass
class Doctor:
    settings: Settings
    config: Config | None
    config_source: str
    env: Mapping[str, str]
    http: httpx.AsyncClient
    url: str | None = None
    socket_mode: bool = False
    scopes: frozenset[str] = frozenset()
    bot_name: str = ""  # the bot user's name, from auth.test

    async def run(self) -> list[Finding]:
        findings = self.check_settings()
        steps: list[Callable[[], Awaitable[list[Finding]]]] = [self.check_slack, self.check_database]
        if self.config is not None:
            steps.append(self.check_targets)
        if self.url:
            steps.append(self.check_public_url)
        for step in steps:
            findings += await step()
        return findings

    # -- settings and variables ---------------------------------------------------------------------------
    def check_settings(self) -> list[Finding]:
        problems = self.settings.credential_problems(socket_mode=self.socket_mode)
        found = []
        for problem in problems:
            what, _, rest = problem.partition(": ")
            found.append(Finding(Mark.FAIL, what, rest if rest.startswith("set ") else f"set it to {rest}"))
        if not problems:
            names = "SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET" + (", SLACK_APP_TOKEN" if self.socket_mode else "")
            found.append(Finding(Mark.OK, f"settings: {names} set"))
        if self.config is None:
            found.append(Finding(Mark.FAIL, f"config: {self.config_source}",
                                 "set OPSBOT_CONFIG or pass --config (examples/opsbot.yml is a start)"))
            return found
        found.append(Finding(Mark.OK, f"config {self.config_source}"))
        missing = missing_env(self.config, self.env)
        for problem in missing:
            path, var = problem.split(": ", 1)[0], _variable(problem)
            found.append(Finding(Mark.FAIL, f"{path}: ${{{var}}} is not set",
                                 f"export {var}=… where opsbot runs (or write a default: ${{{var}:-…}})"))
        if not missing:
            count = len({r for _p, ref in _refs(self.config) for r in ref.references()})
            found.append(Finding(Mark.OK, f"every ${{VAR}} the config reads is set ({count})"))
        return found

    # -- Slack ------------------------------------------------------------------------------------------
    async def check_slack(self) -> list[Finding]:
        token = self.settings.slack_bot_token.get_secret_value() if self.settings.slack_bot_token else ""
        if not token.strip():
            return [Finding(Mark.WARN, "Slack: not checked", "set SLACK_BOT_TOKEN first")]
        slack = Slack(self.http, self.settings.slack_api_url, token)
        try:
            who, headers = await slack.call("auth.test")
        except SlackAnswer as exc:
            fix = ("the token was revoked or is wrong: copy the Bot User OAuth Token again"
                   if exc.error in ("invalid_auth", "not_authed", "token_revoked", "account_inactive")
                   else "check SLACK_API_URL and that Slack is reachable")
            return [Finding(Mark.FAIL, f"auth.test: {exc.error}", fix)]
        except httpx.HTTPError as exc:
            return [Finding(Mark.FAIL, f"auth.test: {self.settings.slack_api_url} unreachable ({type(exc).__name__})",
                            "check SLACK_API_URL and the network")]
        found = [Finding(Mark.OK, f"auth.test: bot {who.get('user', '?')} ({who.get('user_id', '?')}) in team "
                                  f"{who.get('team', '?')}")]
        self.bot_name = str(who.get("user") or "")
        self.scopes = frozenset(s.strip() for s in headers.get("x-oauth-scopes", "").split(",") if s.strip())
        found.append(self._scopes_finding(headers))
        if self.config is not None:
            found += await self._channels(slack)
            found += await self._handles(slack)
        return found

    def _scopes_finding(self, headers: httpx.Headers) -> Finding:
        if "x-oauth-scopes" not in headers:
            return Finding(Mark.WARN, "token scopes: Slack did not say (no x-oauth-scopes header)")
        wanted = manifest_scopes()
        missing = [s for s in wanted if s not in self.scopes]
        if missing:
            return Finding(Mark.FAIL, f"token scopes: missing {', '.join(missing)}",
                           "add them under OAuth & Permissions → Bot Token Scopes (or re-create the app from "
                           "manifest.yml), then reinstall the app and update SLACK_BOT_TOKEN")
        return Finding(Mark.OK, f"token scopes: all {len(wanted)} of manifest.yml granted")

    async def _channels(self, slack: Slack) -> list[Finding]:
        assert self.config is not None
        wanted = dict(_channels(self.config))
        try:
            listed = await slack.every("conversations.list", "channels", types="public_channel,private_channel",
                                       exclude_archived="true", limit="200")
        except SlackAnswer as exc:
            return [_slack_failure(exc, "channels")]
        by_name = {str(c.get("name")): c for c in listed}
        by_id = {str(c.get("id")): c for c in listed}
        found = []
        for ref, path in wanted.items():
            channel = by_id.get(ref) or by_name.get(ref.lstrip("#"))
            if channel is None:
                found.append(Finding(Mark.FAIL, f"channel {ref} ({path}) not found",
                                     f"create {ref} (or fix {path}), then /invite @{self._bot_name()} there"))
            elif not channel.get("is_member"):
                public = not channel.get("is_private")
                mark = Mark.WARN if public and "chat:write.public" in self.scopes else Mark.FAIL
                found.append(Finding(mark, f"channel {ref} ({path}): the bot is not a member",
                                     f"/invite @{self._bot_name()} in {ref}"
                                     + (" (it can post there, but not read its history)" if mark is Mark.WARN
                                        else "")))
            else:
                found.append(Finding(Mark.OK, f"channel {ref} ({path}): exists, the bot is a member"))
        return found

    def _bot_name(self) -> str:
        return self.bot_name or (self.config.name if self.config is not None else "opsbot")

    async def _handles(self, slack: Slack) -> list[Finding]:
        assert self.config is not None
        handles = _handles(self.config)
        if not handles:
            return []
        try:
            groups = await slack.every("usergroups.list", "usergroups", include_disabled="false")
            users = await slack.every("users.list", "members", limit="200")
        except SlackAnswer as exc:
            return [_slack_failure(exc, "@handles")]
        known = {str(g.get("handle", "")).lower() for g in groups}
        known |= {str(u.get("name") or "").lower() for u in users if not u.get("deleted")}
        known |= {str((u.get("profile") or {}).get("display_name") or "").lower() for u in users
                  if not u.get("deleted")}
        unknown = {h: paths for h, paths in handles.items() if h[1:].lower() not in known}
        found = [Finding(Mark.FAIL, f"{handle} ({', '.join(paths[:3])}) is no user or user group here",
                         f"create the user group {handle} or fix the handle")
                 for handle, paths in unknown.items()]
        if len(unknown) < len(handles):
            found.append(Finding(Mark.OK, f"@handles resolve: {len(handles) - len(unknown)} of {len(handles)}"))
        return found

    # -- opsbot's database --------------------------------------------------------------------------------
    async def check_database(self) -> list[Finding]:
        from bot.db import Database, migration_heads

        db = Database(self.settings.database_url.get_secret_value())
        try:
            reachable, problem = await db.readiness(timeout=TIMEOUT)
            revisions = await _revisions(db) if reachable else set()
        finally:
            await db.dispose()
        where = f"database {db.display_url}"
        if not reachable:
            return [Finding(Mark.FAIL, f"{where}: {problem}", "check DATABASE_URL and that the server is up")]
        if problem is None:
            return [Finding(Mark.OK, f"{where}: reachable, at the migration head ({', '.join(migration_heads())})")]
        schema = problem.removeprefix("database ").split(": run")[0]
        if revisions and not revisions <= _known_revisions():
            return [Finding(Mark.FAIL, f"{where}: {schema} (newer than this opsbot)",
                            "deploy the opsbot version that migrated it")]
        return [Finding(Mark.WARN, f"{where}: {schema}",
                        "run `opsbot db upgrade` (`opsbot serve` also upgrades it at start)")]

    # -- targets ---------------------------------------------------------------------------------------
    async def check_targets(self) -> list[Finding]:
        assert self.config is not None
        probes = list(self._probes())
        results = await asyncio.gather(*(probe for _label, probe in probes))
        return list(results)

    def _probes(self) -> Iterator[tuple[str, Awaitable[Finding]]]:
        assert self.config is not None
        for env_name, env in self.config.environments.items():
            for check in env.checks:
                label = f"{env_name}: {check.label()}"
                if isinstance(check, HttpCheck | RateLimitCheck):
                    headers = check.headers if isinstance(check, HttpCheck) else {}
                    if check.method in READ_ONLY:
                        yield label, self._http(label, check.url, check.method, headers)
                    else:
                        yield label, self._tcp_url(label + f" (a {check.method}: only a TCP connect)", check.url)
                elif isinstance(check, TcpCheck):
                    yield label, self._tcp(label, check.host, check.port)
                elif isinstance(check, PostgresCheck):
                    yield label, self._tcp_dsn(label, check.dsn)
        for flag_name, flag in self.config.flags.items():
            for env_name, store in flag.environments.items():
                label = f"flag {flag_name} in {env_name} ({store.provider} store)"
                if isinstance(store, HttpFlagStore):
                    if store.state_url is not None:  # the state it reads; the write URL is never called
                        yield label, self._http(label + " state_url", store.state_url, "GET", {})
                    else:
                        yield label, self._tcp_url(label, store.url)
                elif isinstance(store, PostgresFlagStore):
                    yield label, self._tcp_dsn(label, store.dsn)
        # Rollback runners, pagers, alert sources, actions: a TCP connect only (their calls would act).
        seen: set[str] = set()
        for path, ref in _refs(self.config):
            if isinstance(ref, EnvUrl) and path.startswith(OTHER_TARGETS) and not ref.missing(self.env):
                where = urlsplit(ref.reveal(self.env))
                key = f"{where.hostname}:{where.port}"
                if where.hostname and key not in seen:
                    seen.add(key)
                    yield path, self._tcp_url(path, ref)
        email = self.config.paging.email
        if email is not None:
            try:
                host, port = email.address(self.env)
            except ConfigError:
                return
            yield "paging.email", self._tcp("paging.email (the SMTP relay)", host, port)

    async def _http(self, label: str, url: EnvRef, method: str, headers: Mapping[str, EnvRef]) -> Finding:
        try:
            target = url.reveal(self.env)
            sent = {k: v.reveal(self.env) for k, v in headers.items()}
        except ConfigError:
            return Finding(Mark.WARN, f"{label}: not checked (a ${{VAR}} is not set)")
        try:
            response = await self.http.request(method, target, headers=sent, timeout=TIMEOUT)
        except httpx.TimeoutException:
            return Finding(Mark.FAIL, f"{label}: no answer within {TIMEOUT:g}s", "check the URL and the network path")
        except httpx.HTTPError as exc:
            return Finding(Mark.FAIL, f"{label}: unreachable ({_http_reason(exc)})",
                           "check the URL, DNS and firewall from where opsbot runs")
        if response.status_code >= 500:
            return Finding(Mark.WARN, f"{label}: answers {response.status_code}", "reachable, but unhealthy now")
        if response.status_code in (401, 403):
            return Finding(Mark.WARN, f"{label}: answers {response.status_code}", "check the credentials it sends")
        return Finding(Mark.OK, f"{label}: answers {response.status_code}")

    async def _tcp_url(self, label: str, url: EnvRef) -> Finding:
        try:
            parts = urlsplit(url.reveal(self.env))
        except ConfigError:
            return Finding(Mark.WARN, f"{label}: not checked (a ${{VAR}} is not set)")
        return await self._tcp(label, parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))

    async def _tcp_dsn(self, label: str, dsn: EnvRef) -> Finding:
        try:
            value = dsn.reveal(self.env)
        except ConfigError:
            return Finding(Mark.WARN, f"{label}: not checked (a ${{VAR}} is not set)")
        parts = urlsplit(value) if "://" in value else None
        if parts is None or not parts.hostname:
            return Finding(Mark.WARN, f"{label}: not checked (not a postgresql:// URL)")
        return await self._tcp(label, parts.hostname, parts.port or 5432)

    async def _tcp(self, label: str, host: str, port: int) -> Finding:
        try:
            async with asyncio.timeout(TIMEOUT):
                _reader, writer = await asyncio.open_connection(host, port)
        except TimeoutError:
            return Finding(Mark.FAIL, f"{label}: {host}:{port} did not accept within {TIMEOUT:g}s",
                           "check the host, port and firewall")
        except OSError as exc:
            reason = "cannot resolve host" if "Name or service" in str(exc) or "nodename" in str(exc) \
                else (exc.strerror or type(exc).__name__)
            return Finding(Mark.FAIL, f"{label}: {host}:{port} unreachable ({reason})",
                           "check the host, port and firewall from where opsbot runs")
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return Finding(Mark.OK, f"{label}: {host}:{port} accepts connections")

    # -- the public URL --------------------------------------------------------------------------------
    async def check_public_url(self) -> list[Finding]:
        assert self.url is not None
        target = self.url.rstrip("/")
        if not urlsplit(target).path:
            target += "/slack/events"
        try:
            response = await self.http.post(target, data={"ssl_check": "1", "token": "opsbot-doctor"},
                                            timeout=TIMEOUT)
        except httpx.HTTPError as exc:
            return [Finding(Mark.FAIL, f"{target}: unreachable ({_http_reason(exc)})",
                            "Slack must reach it over HTTPS with a valid certificate: check DNS, TLS and the proxy")]
        if response.status_code != 200:
            return [Finding(Mark.FAIL, f"{target}: ssl_check answered {response.status_code}",
                            "point the proxy at `opsbot serve` and the path at /slack/events")]
        https = urlsplit(target).scheme == "https"
        return [Finding(Mark.OK if https else Mark.WARN, f"{target}: answers Slack's ssl_check",
                        "" if https else "Slack needs https:// request URLs")]


async def run(*, settings: Settings, config: Config | None, config_source: str, env: Mapping[str, str],
              url: str | None = None, socket_mode: bool = False, scrubber: Scrubber | None = None) -> list[Finding]:
    """Every finding in order; their text went through `scrubber` (no secret reaches the terminal)."""
    async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False) as http:
        doctor = Doctor(settings, config, config_source, env, http, url=url, socket_mode=socket_mode)
        findings = await doctor.run()
    scrub = scrubber or Scrubber.of(settings=settings, config=config)
    return [Finding(f.mark, scrub(f.what), scrub(f.fix)) for f in findings]


# -- helpers -------------------------------------------------------------------------------------------
def _variable(problem: str) -> str:
    match = re.search(r"environment variable (\S+) is not set", problem)
    return match.group(1) if match else "VAR"


def _refs(config: Config) -> list[tuple[str, EnvRef]]:
    from bot.config import env_refs

    return env_refs(config)


def _walk(value: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """(path, key, value) for every value of a dumped config."""
    if isinstance(value, dict):
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            yield sub, str(key), item
            yield from _walk(item, sub)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield f"{path}[{i}]", "", item
            yield from _walk(item, f"{path}[{i}]")


def _dump(config: Config) -> Any:
    return config.model_dump(mode="json", exclude_none=True)


def _channels(config: Config) -> Iterator[tuple[str, str]]:
    """(channel as written, YAML path): channels.* and every alert rule's `channel:`."""
    seen: set[str] = set()
    for path, key, value in _walk(_dump(config)):
        if isinstance(value, str) and value and (path.startswith("channels.") or key == "channel"):
            ref = value if value.startswith("#") or CHANNEL_ID.match(value) else "#" + value
            if ref not in seen:
                seen.add(ref)
                yield ref, path


def _handles(config: Config) -> dict[str, list[str]]:
    """@handle → the YAML paths naming it."""
    found: dict[str, list[str]] = {}
    for path, _key, value in _walk(_dump(config)):
        if isinstance(value, str) and HANDLE.match(value):
            found.setdefault(value, []).append(path)
    return found


def _slack_failure(exc: SlackAnswer, what: str) -> Finding:
    if exc.error == "missing_scope":
        return Finding(Mark.FAIL, f"{what}: not checked, {exc.method} needs {exc.needed or 'a scope'}",
                       "add the scope and reinstall the app")
    return Finding(Mark.FAIL, f"{what}: {exc.method} failed ({exc.error})")


def _http_reason(exc: httpx.HTTPError) -> str:
    text = str(exc).lower()
    if "name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
        return "cannot resolve host"
    if "certificate" in text or "ssl" in text:
        return "TLS certificate problem"
    if "refused" in text or isinstance(exc, httpx.ConnectError):
        return "connection refused"
    return type(exc).__name__


async def _revisions(db: Any) -> set[str]:
    from sqlalchemy import text

    try:
        async with db.engine.connect() as conn:
            return set((await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars())
    except Exception:
        return set()


def _known_revisions() -> set[str]:
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    from bot.db import MIGRATIONS

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return {rev.revision for rev in ScriptDirectory.from_config(cfg).walk_revisions()}
