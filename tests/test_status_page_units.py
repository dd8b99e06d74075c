"""The status page's pure parts: uptime bars, component states, public text, the config section."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.errors import ConfigError
from bot.statuspage import state as st
from bot.statuspage.text import clean
from tests.conftest import load_test_config

NOW = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)


def cfg(**page: object) -> object:
    return load_test_config({
        "environments": {"prod": {"default": True, "checks": [
            {"name": "api", "url": "https://api.internal.example/health", "services": ["api"]},
            {"name": "db", "type": "tcp", "host": "db.internal", "port": 5432, "services": ["api"]},
            {"name": "web", "url": "https://www.example.com/"}]}},
        "status_page": {"components": [{"name": "API", "services": ["api"]}, {"name": "Web", "checks": ["web"]},
                                       {"name": "Everything", "environments": ["prod"]}], **page}})


def test_day_bars_weigh_outages_and_leave_days_without_data_empty() -> None:
    changes = [(NOW - timedelta(days=2, hours=12), st.OPERATIONAL),  # Jan 8 00:00
               (NOW - timedelta(days=1, hours=12), st.MAJOR),        # Jan 9 00:00 → 06:00 major
               (NOW - timedelta(days=1, hours=6), st.PARTIAL),       # 06:00 → 12:00 partial
               (NOW - timedelta(days=1), st.OPERATIONAL)]            # then fine
    days, uptime = st.day_bars(changes, now=NOW, days=5)
    assert [d.day.day for d in days] == [6, 7, 8, 9, 10]
    assert [d.state for d in days] == [None, None, "operational", "major_outage", "operational"]
    assert days[3].uptime == pytest.approx(1 - (6 + 6 * 0.3) / 24)
    assert days[4].uptime == 1.0  # today so far (12 h)
    assert uptime == pytest.approx(1 - 7.8 / 60)


def test_the_state_in_force_before_the_window_counts_and_a_change_right_now_is_today() -> None:
    days, uptime = st.day_bars([(NOW - timedelta(days=400), st.PARTIAL), (NOW, st.MAJOR)], now=NOW, days=3)
    assert [d.state for d in days] == ["partial_outage", "partial_outage", "major_outage"]
    assert uptime == pytest.approx(0.7)


def test_component_states_from_monitors() -> None:
    config = cfg()
    page = config.status_page  # type: ignore[attr-defined]
    api, web, everything = page.components
    healthy = {"prod": st.Monitor("healthy")}
    one_down = {"prod": st.Monitor("unhealthy", frozenset({"db"}))}
    both_down = {"prod": st.Monitor("unhealthy", frozenset({"db", "api"}))}
    slow = {"prod": st.Monitor("degraded", frozenset({"api"}))}
    assert st.monitored_state(config, api, healthy) == "operational"  # type: ignore[arg-type]
    assert st.monitored_state(config, api, one_down) == "partial_outage"  # type: ignore[arg-type]
    assert st.monitored_state(config, api, both_down) == "major_outage"  # type: ignore[arg-type]
    assert st.monitored_state(config, api, slow) == "degraded_performance"  # type: ignore[arg-type]
    assert st.monitored_state(config, web, one_down) == "operational"  # type: ignore[arg-type]
    assert st.monitored_state(config, everything, one_down) == "partial_outage"  # type: ignore[arg-type]
    assert st.monitored_state(config, api, {}) == "operational"  # type: ignore[arg-type]  # nothing known yet


def test_incidents_link_by_service_else_by_environment() -> None:
    page = cfg().status_page  # type: ignore[attr-defined]

    def facts(service: str | None, environment: str | None) -> st.IncidentFacts:
        return st.IncidentFacts(1, "t", "P1", service, environment, NOW, None)

    assert st.linked_components(page, facts("API", "prod")) == ("API",)
    assert st.linked_components(page, facts("web", None)) == ("Web",)  # a component's own name
    assert st.linked_components(page, facts(None, "prod")) == ("Everything",)
    assert st.linked_components(page, facts("billing", "prod")) == ()


def test_public_text_keeps_only_what_customers_may_read() -> None:
    config = cfg()
    text = ("<@U0ALICE01|alice> <!channel> <#C0INC1|inc-1-db> #inc-1-db <!subteam^S0OPS|@ops> W0BOBBOB01 "
            "<https://api.internal.example/health|health> https://db.internal:5432/x "
            "Logins fail &amp; time out &lt;sometimes&gt; since 09:00 (#1 priority); "
            "see <https://help.example.com/x|help> or https://www.example.com/ (api token s3cr3t-value-123)")
    cleaned = clean(text, config=config, scrub=lambda s: s.replace("s3cr3t-value-123", "***"))  # type: ignore[arg-type]
    assert cleaned == ("Logins fail & time out <sometimes> since 09:00 (#1 priority); see help "
                       "(https://help.example.com/x) or (api token ***)")


def test_the_section_refuses_duplicates_and_unknown_hosted_components() -> None:
    with pytest.raises(ConfigError, match="names must be unique"):
        load_test_config({"status_page": {"components": [{"name": "API"}, {"name": "api"}]}})
    with pytest.raises(ConfigError, match="no component named Billing"):
        load_test_config({"status_page": {"components": [{"name": "API"}], "hosted": {
            "page_id": "p", "api_key": "${K}", "components": {"Billing": "c1"}}}})
