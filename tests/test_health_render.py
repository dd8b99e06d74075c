"""Pure renderers for /health answers, monitor posts and smoke results."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.health import CheckResult, CommandOutcome, HealthReport, SmokeResult, StateChange, overall
from commands import blocks as bk
from commands.health import render_change, render_reports, render_smoke, reports_text


def report(*results: CheckResult, name: str = "prod") -> HealthReport:
    return HealthReport(environment=name, status=overall(list(results)), results=list(results), duration_ms=212.4)


OK = CheckResult("api", "http", "ok", 45.2, "", 200)
SLOW = CheckResult("web", "http", "warn", 1234.0, "slow: over 1 s", 200)
DOWN = CheckResult("payments", "http", "fail", 5001.0, "timeout after 5 s")


def test_report_structure_lists_failures_first() -> None:
    assert render_reports([report(OK, SLOW, DOWN)]) == [
        {"type": "section", "text": {"type": "mrkdwn",
                                     "text": "❌ *prod* is unhealthy · 1 of 3 checks failing · 212 ms"}},
        {"type": "section", "text": {"type": "mrkdwn", "text":
            "❌ *payments* · 5.0 s · timeout after 5 s\n"
            "⚠️ *web* · 1.2 s · 200 · slow: over 1 s\n"
            "✅ *api* · 45 ms · 200"}},
    ]


def test_overall_status() -> None:
    assert report(OK).status == "healthy"
    assert report(OK, SLOW).status == "degraded"
    assert report(OK, SLOW, DOWN).status == "unhealthy"
    assert "is degraded · 1 of 2 checks slow or near a limit" in reports_text([report(OK, SLOW)])


def test_a_hundred_checks_fit_slack_limits() -> None:
    many = [CheckResult(f"service-{i:03d}", "http", "ok", 201.0, "", 200) for i in range(100)]
    blocks = render_reports([report(*many, name=f"env{e}") for e in range(8)])
    assert len(blocks) <= bk.MAX_MESSAGE_BLOCKS
    assert all(len(b["text"]["text"]) <= bk.SECTION_TEXT for b in blocks if b["type"] == "section")
    text = "\n".join(b["text"]["text"] for b in blocks[:4] if b["type"] == "section")
    assert "service-000" in text and "service-099" in text  # one environment's lines span sections


def test_monitor_change_and_recovery() -> None:
    now = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
    down = StateChange("prod", "healthy", report(OK, DOWN), now - timedelta(hours=2))
    text, blocks = render_change(down, now)
    assert text == "❌ prod is unhealthy: payments"
    assert blocks[0]["text"]["text"] == "❌ *prod* is unhealthy (was healthy for 2h): payments"
    assert "*api*" not in str(blocks)
    up = StateChange("prod", "unhealthy", report(OK), now - timedelta(minutes=15))
    text, blocks = render_change(up, now)
    assert text == "✅ prod recovered: 1 check passes"
    assert blocks[0]["text"]["text"] == "✅ *prod* recovered: 1 check passes (was unhealthy for 15m)"


def test_smoke_output_cannot_break_out_of_its_code_block() -> None:
    outcome = CommandOutcome(1, "step 1 ok\n```\n<!here> boom", "exit code 1", 1500.0)
    text, blocks = render_smoke(SmokeResult("prod", "e2e", False, outcome.detail, command=outcome))
    assert text == "❌ Smoke suite e2e on prod failed: exit code 1"
    code = blocks[1]["text"]["text"]
    assert code.startswith("```") and code.endswith("```") and code.count("```") == 2
    assert "&lt;!here&gt; boom" in code
    assert blocks[-1] == bk.context("Ran in 1.5 s")
