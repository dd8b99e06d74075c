"""Which levels of an escalation policy are due: pure, from the policy, the start, the clock and what fired.

A level fires `after` its delay since the incident (or alert) started; with `repeat: N` the whole policy
starts again every `policy.cycle` up to N more times. An acknowledgement stops everything. When the bot was
away long enough for a later round to have started, the missed levels of earlier rounds are skipped (the
newest round supersedes them) rather than all sent at once.

Severities and alert rules without `escalation_policy` keep their older single escalation as an implicit
one-level policy: `{notify: escalate_to, after: response}` (an alert rule's `escalate_after`)."""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.config import Config, EscalationLevel, EscalationPolicy, Severity
from bot.config.alerts import AlertRule

# The implicit policy of a severity that only has `escalate_to` (stored in EscalationStep.policy).
LEGACY_PREFIX = "severity:"
INFORM = "inform"  # the `inform:` step at declaration: cycle -1, level 0
INFORM_CYCLE = -1


@dataclass(frozen=True)
class Step:
    cycle: int  # 0 for the first round, then 1… for each repeat
    level: int  # index in policy.levels
    targets: tuple[str, ...]
    at: datetime  # when it became due

    @property
    def first(self) -> bool:
        return self.cycle == 0 and self.level == 0


@dataclass(frozen=True)
class Resolved:
    """A policy and the name its steps are recorded under."""

    name: str
    policy: EscalationPolicy
    legacy: bool = False


def due_steps(policy: EscalationPolicy, started_at: datetime, now: datetime, fired: Set[tuple[int, int]],
              acknowledged: bool) -> list[Step]:
    """The steps due at `now` that have not fired, oldest first (none once acknowledged)."""
    if acknowledged or now < started_at:
        return []
    cycle = policy.cycle
    current = min(int((now - started_at) / cycle), policy.repeat) if cycle > timedelta(0) else 0
    start = started_at + cycle * current
    return [Step(current, index, tuple(level.notify), start + level.after)
            for index, level in enumerate(policy.levels)
            if start + level.after <= now and (current, index) not in fired]


def next_due(policy: EscalationPolicy, started_at: datetime, now: datetime) -> datetime | None:
    """When the next level fires after `now` (None when the policy has run its course)."""
    for cycle in range(policy.repeat + 1):
        start = started_at + policy.cycle * cycle
        for level in policy.levels:
            if start + level.after > now:
                return start + level.after
    return None


def implicit(targets: list[str], after: timedelta) -> EscalationPolicy:
    return EscalationPolicy(levels=[EscalationLevel(notify=targets, after=after)])


def for_severity(config: Config, severity: Severity) -> Resolved | None:
    """The severity's named policy, else the implicit one of its `escalate_to` after `response`."""
    if severity.escalation_policy:
        policy = config.escalation_policies.get(severity.escalation_policy)
        return Resolved(severity.escalation_policy, policy) if policy is not None else None
    if severity.escalate_to:
        return Resolved(LEGACY_PREFIX + severity.name, implicit(severity.escalate_to, severity.response), True)
    return None


def for_rule(config: Config, rule: AlertRule | None) -> Resolved | None:
    """An alert rule's named policy. Rules without one keep the alert engine's own escalation (warning to
    critical after `escalate_after`, mentioning `escalate_to`): None here."""
    if rule is None or not rule.escalation_policy:
        return None
    policy = config.escalation_policies.get(rule.escalation_policy)
    return Resolved(rule.escalation_policy, policy) if policy is not None else None
