"""`severities:` and `incidents:` sections."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator

from bot.config.base import Model, Name
from bot.config.secrets import EnvRef, EnvUrl
from bot.durations import Duration

if TYPE_CHECKING:
    from bot.config import Config
    from bot.models import Incident, IncidentEvent


class Severity(Model):
    name: str
    # The runbook's word for the level ("Critical", "High"…), shown beside the name: `P1 (Critical)`.
    label: str = ""
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

    @property
    def shown(self) -> str:
        """The name with its label, as people read it: `P1 (Critical)`, or `P1`."""
        return f"{self.name} ({self.label})" if self.label else self.name


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
            Role(name="scribe", description="Keeps the timeline and drafts the postmortem",
                 reminders=["followups"])]


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


# -- `opsbot config check` (bot.config.check_file) ---------------------------------------------------------
RESPONSE_UNSET = "not set, so it defaults to 24h; set it from your runbook's severity table"


def check(config: Config) -> tuple[list[str], list[str]]:
    """(errors, warnings) of the incident sections that validation cannot see: `update_template` rendered
    against a sample incident (every field set, two updates; open and resolved, at every severity), where an
    undefined name is an error naming the line and the field; a severity without `response`, a warning."""
    warnings = [f"severities.{s.name}.response: {RESPONSE_UNSET}" for s in config.severities
                if "response" not in s.model_fields_set]
    template = config.incidents.update_template
    if not template:
        return [], warnings
    from bot.incidents import template_context
    from bot.templates import render

    errors: list[str] = []
    for incident, timeline in _samples(config):
        try:
            render(template, template_context(config, incident, timeline), builtin=False)
        except ValueError as exc:
            problem = f"incidents.update_template: {str(exc).removeprefix('template failed: ')}"
            if problem not in errors:
                errors.append(problem)
    return errors, warnings


def _samples(config: Config) -> list[tuple[Incident, list[IncidentEvent]]]:
    """A declared incident with two updates, then the same resolved, at each severity of the config."""
    from bot.models import Incident, IncidentEvent

    start = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    found = []
    for severity in config.severities:
        for resolved in (False, True):
            incident = Incident(
                id=42, title="Checkout is down", severity=severity.name,
                status="resolved" if resolved else "identified", service="checkout", environment="prod",
                impact="EU card payments fail", description="Errors on /pay",
                eta="30m", reporter_id="U0REPORTER", commander_id="U0COMMANDER", source_link="https://example.com/a",
                channel_id="C0INCIDENT", channel_name="inc-42-checkout-is-down", created_at=start,
                acknowledged_at=start + timedelta(minutes=2), acknowledged_by="U0COMMANDER",
                last_update_at=start + timedelta(minutes=10), version=3,
                resolved_at=start + timedelta(minutes=40) if resolved else None,
                resolution="Rolled back checkout to v1.4.2" if resolved else None)
            events = [IncidentEvent(incident_id=42, at=start, actor="U0REPORTER", kind="declared",
                                    text=f"{severity.name} declared: Checkout is down", data={}),
                      IncidentEvent(incident_id=42, at=start + timedelta(minutes=5), actor="U0COMMANDER",
                                    kind="update", text="Card processor timing out", data={"status": "investigating"}),
                      IncidentEvent(incident_id=42, at=start + timedelta(minutes=10), actor="U0COMMANDER",
                                    kind="update", text="Bad deploy of checkout", data={"status": "identified"})]
            if resolved:
                events.append(IncidentEvent(incident_id=42, at=start + timedelta(minutes=40), actor="U0COMMANDER",
                                            kind="resolved", text="Rolled back checkout to v1.4.2", data={}))
            found.append((incident, events))
    return found
