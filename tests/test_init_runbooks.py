"""`opsbot init`: what is drafted from runbooks written in different styles (tests/runbooks/*.md).

Each draft is loaded with bot.config as `opsbot config check` loads it; the assertions are on the loaded
config, so a draft that opsbot would read differently fails here."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config import Config, HttpCheck, PostgresCheck, PostgresFlagStore, parse_config
from bot.config.actions import CommandAction, IntegerParam, SqlAction
from bot.config.rollbacks import CommandRunner
from bot.init import draft
from bot.templates import render

pytestmark = pytest.mark.backend_independent  # its own SQLite database or none (tests/conftest.py)

RUNBOOKS = Path(__file__).parent / "runbooks"


def drafted(name: str) -> tuple[Config, str, Any]:
    result = draft((RUNBOOKS / name).read_text(encoding="utf-8"), source=f"tests/runbooks/{name}")
    config = parse_config(yaml.safe_load(result.text), env={})
    return config, result.text, result


def checks(config: Config, env: str = "prod") -> dict[str, Any]:
    return {c.label(): c for c in config.environments[env].checks}


def context(**incident: Any) -> dict[str, Any]:
    now = datetime(2026, 3, 4, 9, 30, tzinfo=UTC)
    base = dict.fromkeys(("id", "environment", "description", "source_link", "acknowledged_at", "acknowledged_by",
                          "resolved_at", "resolution", "channel_name"))
    base.update({"title": "Checkout down", "severity": "P1", "status": "identified", "service": "api",
                 "impact": "All EU customers", "eta": "10:30 UTC", "commander_id": "U0ALICE", "reporter_id": "U0BOB",
                 "channel_id": "C0INC", "created_at": now, "ref": "INC-7"})
    base.update(incident)
    return {"incident": base, "severity": {"name": "P1", "description": "", "response": ""},
            "updates": [{"at": now, "actor": "U0ALICE", "text": "Rolled back to 2.4.0", "status": "identified"}],
            "events": [], "duration": None}


def test_fastapi_runbook_tables_bearer_endpoints_and_troubleshooting() -> None:
    config, text, result = drafted("floyo-fastapi.md")
    assert [(s.name, s.response) for s in config.severities] == [
        ("P0", timedelta(0)), ("P1", timedelta(minutes=15)), ("P2", timedelta(hours=1)), ("P3", timedelta(hours=4)),
        ("P4", timedelta(hours=24))]
    assert config.severities[0].description == "Complete outage, data loss risk"
    assert config.severities[1].escalate_to == ["@oncall", "@eng-leads"]
    assert config.severities[3].escalate_to == ["@team-lead"]  # a guess, commented as one
    assert config.severities[4].escalate_to == []
    assert config.name == "floyo"

    found = checks(config)
    health = found["health"]
    assert isinstance(health, HttpCheck) and str(health.url) == "https://api.floyo.io/health"
    assert health.expect_json == {"status": "healthy", "database": "connected"}  # the version changes: left out
    assert isinstance(found["admin-users"], HttpCheck) and found["admin-users"].expect_status == 401
    stats = found["admin-stats"]
    assert isinstance(stats, HttpCheck) and stats.headers["Authorization"].template == "Bearer ${FLOYO_ADMIN_TOKEN}"
    # The endpoint table: relative paths on the runbook's base URL; a POST is no health check.
    ready, me = found["health-ready"], found["v1-me"]
    assert isinstance(ready, HttpCheck) and str(ready.url) == "https://api.floyo.io/health/ready"
    assert ready.expect_json == {"ready": True}
    assert isinstance(me, HttpCheck) and me.expect_status == 200
    assert me.headers["Authorization"].template == "Bearer ${API_TOKEN}"
    assert not any("projects" in name for name in found)
    assert any("POST /api/v1/projects" in line for line in result.left_out)
    # $DATABASE_URL is opsbot's own setting: the app's database gets another name.
    database = found["database"]
    assert isinstance(database, PostgresCheck) and database.dsn.template == "${APP_DATABASE_URL}"

    rules = {r.name: r for r in config.alerts.rules}
    assert set(rules) == {"api-latency-p95", "error-rate", "db-connections-pool"}
    latency = rules["api-latency-p95"]
    assert latency.warning is not None and latency.critical is not None
    assert (latency.warning.op, latency.warning.value, latency.critical.value, latency.unit) == (">", 500, 1000, "ms")
    assert rules["db-connections-pool"].source == "postgres" and rules["db-connections-pool"].unit == "%"
    assert config.alerts.prometheus is not None and config.alerts.prometheus.url.template == "${PROMETHEUS_URL}"
    assert "# - name: celery-queue-depth" in text  # no source to guess: shown, not configured

    template = config.incidents.update_template
    assert template is not None
    rendered = render(template, context(), builtin=False)
    assert rendered.splitlines()[:4] == ["🚨 INCIDENT: api - Checkout down", "Status: Identified", "Severity: P1",
                                         "Impact: All EU customers"]
    assert "Incident Commander: <@U0ALICE>" in rendered and "ETA: 10:30 UTC" in rendered

    rollback = config.rollbacks["api"].environments["prod"]
    assert isinstance(rollback, CommandRunner)
    assert rollback.argv[:2] == ["sh", "-ec"]
    assert rollback.argv[2].splitlines() == ["git checkout {version}", "docker compose build api",
                                             "docker compose up -d api"]

    actions = config.actions
    restart = actions["restart-floyo-backend"].environments["prod"]
    assert isinstance(restart, CommandAction) and restart.argv == ["sudo", "systemctl", "restart", "floyo-backend"]
    assert actions["redis-cli-flushdb"].destructive is True
    assert actions["logs-floyo-api"].is_read_only("prod")
    pool = actions["pg-stat-activity"]
    assert isinstance(pool.environments["prod"], SqlAction) and pool.is_read_only("prod")

    book = config.runbooks["high-api-latency"]
    assert book.symptoms == ["P95 latency above 1000ms", "Users report slow page loads"]
    assert book.alerts == ["api-latency-p95"]
    assert [(s.kind, s.target) for s in book.steps] == [
        ("action", "pg-stat-activity"), ("action", "restart-floyo-backend"), ("action", "redis-cli-flushdb")]
    assert book.steps[1].text == "Restart the backend:"
    crash = config.runbooks["api-container-crash-looping"]
    assert [(s.kind, s.target) for s in crash.steps] == [
        ("action", "logs-floyo-api"), ("action", "restart-floyo-api"), ("check", "health")]


def test_postgres_saas_lists_feature_flags_and_kill_queries() -> None:
    config, _text, _result = drafted("ledgerly-saas.md")
    assert config.name == "ledgerly"
    assert (config.channels.incidents, config.channels.alerts) == ("#ledgerly-incidents", "#alerts")
    assert [(s.name, s.response) for s in config.severities] == [
        ("Critical", timedelta(minutes=5)), ("High", timedelta(minutes=30)), ("Medium", timedelta(hours=4)),
        ("Low", timedelta(hours=24))]
    assert config.severities[0].escalate_to == ["@ledgerly-oncall", "@cto"]
    assert config.severities[0].description == "Invoicing unavailable for all tenants or data corruption"

    found = checks(config)
    healthz = found["healthz"]
    assert isinstance(healthz, HttpCheck)
    assert healthz.expect_json == {"status": "ok", "checks.db": "ok", "checks.queue": "ok"}  # not the uptime
    assert isinstance(found["invoices"], HttpCheck) and found["invoices"].expect_status == 401
    database = found["database"]
    assert isinstance(database, PostgresCheck) and database.dsn.template == "${APP_DATABASE_URL}"

    assert set(config.flags) == {"pdf_export", "stripe_sync"}
    store = config.flags["pdf_export"].environments["prod"]
    assert isinstance(store, PostgresFlagStore)
    assert (store.table, store.name_column, store.kill_switch_column) == ("feature_flags", "name", "kill_switch")
    assert store.rollout_column is None  # the runbook shows no rollout column: none is selected
    assert config.flags["pdf_export"].kill_switch

    rules = {r.name: r for r in config.alerts.rules}
    # "P95 < 200ms" is a target: the alert fires above it; "for 5 minutes pages the on-call" is critical.
    p95 = rules["p95-invoice-api"]
    assert p95.warning is not None and (p95.warning.op, p95.warning.value, p95.unit) == (">", 200, "ms")
    errors = rules["error-rate"]
    assert errors.critical is not None and (errors.critical.op, errors.critical.value) == (">", 1)
    assert errors.for_ == timedelta(minutes=5)

    kill = config.actions["kill-queries"]
    runner = kill.environments["prod"]
    assert isinstance(runner, SqlAction) and "pg_terminate_backend" in runner.query
    assert kill.destructive and not kill.is_read_only("prod")
    assert config.actions["pg-stat-activity"].is_read_only("prod")

    rollback = config.rollbacks["ledgerly-api"].environments["prod"]
    assert isinstance(rollback, CommandRunner)
    assert rollback.argv == ["helm", "rollback", "ledgerly-api", "{version}", "-n", "ledgerly"]

    pool = config.runbooks["connection-pool-exhausted"]
    assert [(s.kind, s.target) for s in pool.steps] == [
        ("action", "pg-stat-activity"), ("action", "kill-queries"), ("killswitch", "pdf_export")]
    assert pool.symptoms[1] == "Requests time out after 30s"
    stuck = config.runbooks["payments-stuck"]
    assert [(s.kind, s.target) for s in stuck.steps] == [
        ("action", "restart-stripe-sync"), ("killswitch", "stripe_sync"), ("rollback", "ledgerly-api")]

    template = config.incidents.update_template
    assert template is not None
    assert render(template, context(), builtin=False).splitlines()[0] == "[P1] Checkout down"


def test_container_app_with_kubectl_and_az() -> None:
    config, _text, result = drafted("contoso-containers.md")
    assert [(s.name, s.response, s.description) for s in config.severities] == [
        ("SEV1", timedelta(minutes=15), "Storefront down or checkout failing for everyone"),
        ("SEV2", timedelta(hours=1), "Checkout slow or failing for some customers"),
        ("SEV3", timedelta(hours=8), "Internal tools broken")]
    assert config.severities[0].escalate_to == ["@oncall", "@head-of-engineering"]
    assert config.severities[2].escalate_to == []  # a Slack channel is not someone to page

    prod, staging = checks(config), checks(config, "staging")
    assert isinstance(prod["admin"], HttpCheck) and prod["admin"].expect_status == 401  # `-w %{http_code}` → 401
    assert isinstance(prod["healthz"], HttpCheck) and prod["healthz"].expect_json == {"status": "ok"}
    assert str(staging["healthz"].url) == "https://staging.contoso-shop.com/healthz"  # type: ignore[union-attr]
    assert config.default_environment == "prod"

    rollback = config.rollbacks["web"].environments["prod"]
    assert isinstance(rollback, CommandRunner)
    assert rollback.argv == ["kubectl", "rollout", "undo", "deployment/web", "-n", "storefront"]

    scale = config.actions["scale-web"]
    assert isinstance(scale.params["count"], IntegerParam)
    runner = scale.environments["prod"]
    assert isinstance(runner, CommandAction) and "--replicas={count}" in runner.argv
    restart = config.actions["restart-web"].environments["prod"]
    assert isinstance(restart, CommandAction)
    assert restart.argv == ["kubectl", "rollout", "restart", "deployment/web", "-n", "storefront"]
    # $RESOURCE_GROUP is a setting the runbook reads from the environment: sh expands it from `env:`.
    az = config.actions["restart-contoso-checkout"].environments["prod"]
    assert isinstance(az, CommandAction) and az.argv[:2] == ["sh", "-ec"]
    assert az.argv[2] == "az webapp restart --name contoso-checkout --resource-group $RESOURCE_GROUP"
    assert az.env["RESOURCE_GROUP"].template == "${RESOURCE_GROUP}"
    assert config.actions["describe-web"].is_read_only("prod")

    rules = {r.name: r for r in config.alerts.rules}
    assert rules["checkout-latency"].critical is not None
    assert (rules["checkout-latency"].critical.value, rules["checkout-latency"].unit) == (2000, "ms")  # 2s in ms
    assert rules["cpu"].warning is not None and rules["cpu"].warning.value == 85
    assert any("pod-restarts" in line for line in result.left_out)
    assert config.incidents.update_template is None

    crash = config.runbooks["pods-crash-looping"]
    assert [s.target for s in crash.steps] == ["describe-web", "restart-web", "scale-web"]
    assert crash.symptoms == ["`kubectl get pods -n storefront` shows CrashLoopBackOff"]
    checkout = config.runbooks["legacy-checkout-returns-503"]
    assert [s.target for s in checkout.steps] == ["restart-contoso-checkout", "log-contoso-checkout"]


def test_lists_and_headings_only_runbook() -> None:
    config, _text, _result = drafted("pager-lists.md")
    assert [(s.name, s.response, s.escalate_to) for s in config.severities] == [
        ("P1", timedelta(0), ["@platform-oncall", "@cto"]), ("P2", timedelta(hours=1), ["@platform-oncall"]),
        ("P3", timedelta(hours=24), [])]
    found = checks(config)
    assert isinstance(found["livez"], HttpCheck) and found["livez"].expect_status == 200
    assert str(found["livez"].url) == "http://localhost:8080/livez"
    assert isinstance(found["readyz"], HttpCheck) and found["readyz"].expect_json == {"ready": True, "db": "up"}
    database = found["database"]
    assert isinstance(database, PostgresCheck) and database.dsn.template == "${NOTES_DB_URL}"

    template = config.incidents.update_template  # an indented code block with <placeholders>
    assert template is not None
    assert render(template, context(), builtin=False).splitlines() == [
        "INCIDENT INC-7: Checkout down", "Severity P1 / Status Identified",
        "Started 2026-03-04 09:30 UTC, commander <@U0ALICE>", "Impact: All EU customers"]

    rules = {r.name: r for r in config.alerts.rules}
    assert rules["latency-p99"].warning is not None and rules["latency-p99"].warning.value == 1500
    assert "0.99" in rules["latency-p99"].query
    assert set(rules) == {"latency-p99", "memory-usage", "error-rate"}

    rollback = config.rollbacks["notes-api"].environments["prod"]
    assert isinstance(rollback, CommandRunner)
    assert rollback.argv == ["sudo", "/opt/notes/bin/deploy", "--version", "{version}"]

    book = config.runbooks["saves-failing-with-500"]
    assert book.symptoms == ["`ERROR could not obtain lock` in `journalctl -u notes-api`"]  # "Symptom:" dropped
    assert [(s.kind, s.target) for s in book.steps] == [
        ("action", "restart-notes-api"), ("action", "pg-locks"), ("text", None)]
    locks = config.actions["pg-locks"].environments["prod"]
    assert isinstance(locks, SqlAction) and locks.dsn.template == "${NOTES_DB_URL}"


@pytest.mark.parametrize("name", sorted(p.name for p in RUNBOOKS.glob("*.md")))
def test_every_guess_names_its_runbook_line(name: str) -> None:
    """Each `# from RUNBOOK:N "…"` comment quotes line N of the runbook."""
    lines = (RUNBOOKS / name).read_text(encoding="utf-8").splitlines()
    text = draft("\n".join(lines) + "\n", source=f"tests/runbooks/{name}").text
    comments = re.findall(rf'from {re.escape(name)}:(\d+) "(.*?)"(?=;|$)', text, re.MULTILINE)
    assert len(comments) >= 10
    for number, excerpt in comments:
        quoted = " ".join(lines[int(number) - 1].split())
        assert quoted.startswith(excerpt.rstrip("…")), (number, excerpt, quoted)


def source_line(text: str, anchor: str, runbook: str) -> int:
    """The runbook line named by the comment just above (or on) the first YAML line starting with `anchor`."""
    lines = text.splitlines()
    index = next(i for i, line in enumerate(lines) if line.strip().startswith(anchor))
    for line in (lines[index], lines[index - 1], lines[index - 2]):
        found = re.search(rf"from {re.escape(runbook)}:(\d+) ", line)
        if found:
            return int(found.group(1))
    raise AssertionError(f"no source comment for {anchor!r}")


@pytest.mark.parametrize(("runbook", "anchor", "quoted"), [
    ("floyo-fastapi.md", "- name: P0", "| P0 | Complete outage"),
    ("floyo-fastapi.md", "- name: P4", "| P4 | Cosmetic issue"),
    ("floyo-fastapi.md", "- name: health\n", "curl https://api.floyo.io/health"),
    ("floyo-fastapi.md", "- name: admin-users", "curl -i https://api.floyo.io/api/admin/users"),
    ("floyo-fastapi.md", "- name: v1-me", "| `/api/v1/me` |"),
    ("floyo-fastapi.md", "- name: database", "psql $DATABASE_URL"),
    ("floyo-fastapi.md", "update_template:", "🚨 INCIDENT: [Service Name]"),
    ("floyo-fastapi.md", "- name: error-rate", "| Error rate |"),
    ("floyo-fastapi.md", "api:", "git checkout <previous-version>"),
    ("floyo-fastapi.md", "pg-stat-activity:", "SELECT count(*) FROM pg_stat_activity"),
    ("floyo-fastapi.md", "restart-floyo-backend:", "sudo systemctl restart floyo-backend"),
    ("floyo-fastapi.md", "high-api-latency:", "### High API latency"),
    ("ledgerly-saas.md", "- name: Medium", "- **Medium**"),
    ("ledgerly-saas.md", "stripe_sync:", "WHERE name = 'stripe_sync'"),
    ("ledgerly-saas.md", "kill-queries:", "SELECT pg_terminate_backend(pid)"),
    ("ledgerly-saas.md", "- name: p95-invoice-api", "- P95 < 200ms"),
    ("contoso-containers.md", "- name: SEV2", "| SEV2 |"),
    ("contoso-containers.md", "- name: admin", "-w \"%{http_code}\" https://www.contoso-shop.com/admin"),
    ("contoso-containers.md", "restart-contoso-checkout:", "az webapp restart"),
    ("pager-lists.md", "- name: P2", "### P2 - Degraded"),
    ("pager-lists.md", "- name: readyz", "* Readiness:"),
    ("pager-lists.md", "notes-api:", "/opt/notes/bin/deploy"),
])
def test_line_comments_point_at_the_line_the_value_came_from(runbook: str, anchor: str, quoted: str) -> None:
    lines = (RUNBOOKS / runbook).read_text(encoding="utf-8").splitlines()
    text = draft("\n".join(lines) + "\n", source=f"tests/runbooks/{runbook}").text
    if anchor.endswith("\n"):  # an exact line
        anchor = anchor.rstrip("\n")
        text = "\n".join(line if line.strip() != anchor else line + "\0" for line in text.splitlines())
        anchor += "\0"
    number = source_line(text, anchor, runbook)
    assert quoted in lines[number - 1], (number, lines[number - 1])
