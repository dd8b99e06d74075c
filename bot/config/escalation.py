"""`escalation_policies:` — who is notified, in which order, until someone acknowledges."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, model_validator

from bot.config.base import Model
from bot.durations import Duration


class EscalationLevel(Model):
    # Targets (bot/paging/targets.py): "@handle", "U…", "S…", "oncall:<schedule>", "email:<address>",
    # "pagerduty:<service>", "opsgenie:<team>", "webhook:<name>".
    notify: list[str] = Field(min_length=1)
    # Since the incident or alert started (not since the previous level).
    after: Duration = timedelta(0)


class EscalationPolicy(Model):
    levels: list[EscalationLevel] = Field(min_length=1)
    # Start again from the first level this many times while nobody acknowledges…
    repeat: int = Field(default=0, ge=0, le=10)
    # …this long after the previous round's last level fired (default: the last level's `after`, at least 5m).
    repeat_after: Duration | None = None

    @model_validator(mode="after")
    def _ordered(self) -> EscalationPolicy:
        afters = [level.after for level in self.levels]
        if afters != sorted(afters):
            raise ValueError("levels must be in the order they fire (each `after` at least the previous one)")
        return self

    @property
    def cycle(self) -> timedelta:
        """Time from a round's start to the next round's start."""
        gap = self.repeat_after or max(self.levels[-1].after, timedelta(minutes=5))
        return self.levels[-1].after + gap
