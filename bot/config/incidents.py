"""`severities:` and `incidents:` sections."""

from __future__ import annotations

from datetime import timedelta

from typing import Literal

from pydantic import Field, field_validator, model_validator

from bot.config.base import Model, Name
from bot.config.secrets import EnvRef, EnvUrl
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


# -- roles and the follow-up tracker (bot/incidents/roles.py, bot/followups) -----------------------------
REMINDERS = ("status_update", "followups")


class Role(Model):
    name: Name
    description: str = ""
    # Reminders this role receives: status_update (no update for a while), followups (overdue follow-ups).
    reminders: list[Literal["status_update", "followups"]] = Field(default_factory=list)


def default_roles() -> list[Role]:
    return [Role(name="commander", description="Leads the response and makes the calls"),
            Role(name="communications", description="Posts status updates for stakeholders",
                 reminders=["status_update"]),
            Role(name="scribe", description="Keeps the timeline and drafts the postmortem")]


class GitHubTracker(Model):
    repo: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")  # owner/name
    token: EnvRef  # ${GITHUB_TOKEN}: sent as `Authorization: Bearer …`
    labels: list[str] = Field(default_factory=list)
    api_url: EnvUrl = EnvUrl("https://api.github.com")


class JiraTracker(Model):
    url: EnvUrl  # https://<site>.atlassian.net
    email: str
    token: EnvRef  # ${JIRA_API_TOKEN}: basic auth email:token
    project: str
    issue_type: str = "Task"


class Tracker(Model):
    """Exactly one of `github:` or `jira:`: where each follow-up becomes an issue."""

    github: GitHubTracker | None = None
    jira: JiraTracker | None = None
    poll_every: Duration = timedelta(minutes=5)

    @model_validator(mode="after")
    def _one(self) -> Tracker:
        if (self.github is None) == (self.jira is None):
            raise ValueError("configure one tracker: `github` or `jira`")
        return self


class IncidentSettings(Model):
    channel_prefix: str = "inc"
    private_channels: bool = False
    # Jinja2 template for status updates; None uses bot/templates/status_update.md.j2.
    update_template: str | None = None
    # Default reminder interval for severities that do not set remind_after, applied to the two most severe.
    remind_after: Duration = timedelta(minutes=30)
    invite: list[str] = Field(default_factory=list)
    roles: list[Role] = Field(default_factory=default_roles)  # `commander` is always a role (commander_id)
    tracker: Tracker | None = None

    @field_validator("roles")
    @classmethod
    def _roles(cls, value: list[Role]) -> list[Role]:
        names = [r.name.lower() for r in value]
        if len(set(names)) != len(names):
            raise ValueError("role names must be unique")
        if "commander" not in names:
            value = [Role(name="commander", description="Leads the response"), *value]
        return value

    def role(self, name: str) -> Role | None:
        return next((r for r in self.roles if r.name.lower() == name.lower()), None)

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
