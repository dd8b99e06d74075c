"""`severities:` and `incidents:` sections."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, field_validator

from bot.config.base import Model
from bot.durations import Duration


class Severity(Model):
    name: str
    description: str = ""
    response: Duration = timedelta(hours=24)
    escalate_to: list[str] = Field(default_factory=list)
    # Levels of notification until someone acknowledges (escalation_policies); replaces escalate_to.
    escalation_policy: str | None = None
    # Told at declaration whether or not anyone acknowledges ("Critical → VP Eng + CTO").
    inform: list[str] = Field(default_factory=list)
    # While open, remind in the incident channel after this long without an update (None = never).
    remind_after: Duration | None = None
    color: str | None = None

    @property
    def immediate(self) -> bool:
        return self.response == timedelta(0)


class IncidentSettings(Model):
    channel_prefix: str = "inc"
    private_channels: bool = False
    # Jinja2 template for status updates; None uses bot/templates/status_update.md.j2.
    update_template: str | None = None
    # Default reminder interval for severities that do not set remind_after, applied to the two most severe.
    remind_after: Duration = timedelta(minutes=30)
    invite: list[str] = Field(default_factory=list)

    @field_validator("channel_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        cleaned = value.strip().lower()
        if not cleaned or len(cleaned) > 20 or not all(c.isalnum() or c in "-_" for c in cleaned):
            raise ValueError("use 1-20 lowercase letters, digits, '-' or '_'")
        return cleaned

    @field_validator("update_template")
    @classmethod
    def _template_compiles(cls, value: str | None) -> str | None:
        # A broken template must fail `opsbot config check`, not the first status update of an incident.
        if value is not None:
            from bot.templates import compile_template

            compile_template(value)
        return value
