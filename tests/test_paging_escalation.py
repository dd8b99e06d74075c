"""The pure escalation policy: which levels are due when, repeats, acknowledgement, the implicit policies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.config import EscalationPolicy
from bot.paging.escalation import Step, due_steps, for_rule, for_severity, next_due
from tests.conftest import load_test_config

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
POLICY = EscalationPolicy.model_validate({"levels": [
    {"notify": ["oncall:primary"], "after": "0m"},
    {"notify": ["oncall:secondary", "@eng-leads"], "after": "15m"},
    {"notify": ["@vp-eng"], "after": "1h"}]})


def due(policy: EscalationPolicy, minutes: float, fired: set[tuple[int, int]] = frozenset(),  # type: ignore[assignment]
        acknowledged: bool = False) -> list[tuple[int, int]]:
    return [(s.cycle, s.level) for s in due_steps(policy, T0, T0 + timedelta(minutes=minutes), fired, acknowledged)]


def test_levels_fire_after_their_delay_since_the_start() -> None:
    assert due(POLICY, 0) == [(0, 0)]
    assert due(POLICY, 14, {(0, 0)}) == []
    assert due(POLICY, 15, {(0, 0)}) == [(0, 1)]
    assert due(POLICY, 90, {(0, 0)}) == [(0, 1), (0, 2)]  # the bot was away: both late levels at once
    assert due(POLICY, 500, {(0, 0), (0, 1), (0, 2)}) == []  # no repeat: done


def test_a_step_names_its_targets_and_when_it_was_due() -> None:
    [step] = due_steps(POLICY, T0, T0 + timedelta(minutes=20), {(0, 0)}, False)
    assert step == Step(0, 1, ("oncall:secondary", "@eng-leads"), T0 + timedelta(minutes=15))


def test_an_acknowledgement_stops_every_level() -> None:
    assert due(POLICY, 90, acknowledged=True) == []


def test_repeat_starts_again_after_the_cycle_and_skips_superseded_rounds() -> None:
    policy = EscalationPolicy.model_validate({"levels": [{"notify": ["@a"]}, {"notify": ["@b"], "after": "10m"}],
                                              "repeat": 2, "repeat_after": "20m"})
    assert policy.cycle == timedelta(minutes=30)
    fired = {(0, 0), (0, 1)}
    assert due(policy, 29, fired) == []
    assert due(policy, 30, fired) == [(1, 0)]
    assert due(policy, 40, fired | {(1, 0)}) == [(1, 1)]
    assert due(policy, 65, fired) == [(2, 0)]  # round 1 was missed entirely: only the newest round
    everything = fired | {(1, 0), (1, 1), (2, 0), (2, 1)}
    assert due(policy, 1000, everything) == []
    assert next_due(policy, T0, T0 + timedelta(minutes=31)) == T0 + timedelta(minutes=40)
    assert next_due(policy, T0, T0 + timedelta(minutes=80)) is None


def test_legacy_severity_is_a_one_level_policy_of_its_response_time() -> None:
    config = load_test_config()
    p2 = for_severity(config, config.severity("P2"))
    assert p2 is not None and p2.legacy and p2.name == "severity:P2"
    assert [(lvl.notify, lvl.after) for lvl in p2.policy.levels] == [(["@eng-leads"], timedelta(hours=1))]
    p1 = for_severity(config, config.severity("P1"))
    assert p1 is not None and p1.policy.levels[0].after == timedelta(0)
    assert for_severity(config, config.severity("P4")) is None  # no targets: no escalation


def test_a_named_policy_wins_over_escalate_to() -> None:
    config = load_test_config({
        "escalation_policies": {"critical": {"levels": [{"notify": ["@vp-eng"]}]}},
        "severities": [{"name": "SEV1", "response": "immediate", "escalate_to": ["@eng-leads"],
                        "escalation_policy": "critical"}],
        "alerts": {"rules": [{"name": "p95", "source": "http_json", "query": "http://127.0.0.1:9/x", "path": "v",
                              "critical": "> 1", "escalation_policy": "critical"},
                             {"name": "errs", "source": "http_json", "query": "http://127.0.0.1:9/x", "path": "v",
                              "critical": "> 1"}]}})
    resolved = for_severity(config, config.severity("SEV1"))
    assert resolved is not None and resolved.name == "critical" and not resolved.legacy
    rules = {r.name: r for r in config.alerts.rules}
    assert (for_rule(config, rules["p95"]) or resolved).name == "critical"
    assert for_rule(config, rules["errs"]) is None  # the alert engine's own escalate_to/escalate_after
