"""`permissions:` — who may do which mutating action in which environment."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from bot.config.base import Model

ACTIONS = (
    "incident.declare", "incident.update", "incident.resolve", "incident.assign", "incident.severity",
    "killswitch", "flag", "rollback", "rollback.approve", "alert.silence", "alert.ack",
    "oncall.override", "page",
)


class PermissionRule(Model):
    """Members of `allow` may perform `actions` in `environments` (`*` = all)."""

    actions: list[str] = Field(default_factory=lambda: ["*"])
    environments: list[str] = Field(default_factory=lambda: ["*"])
    allow: list[str]

    @field_validator("actions")
    @classmethod
    def _known_actions(cls, value: list[str]) -> list[str]:
        for action in value:
            # action:<name> and action:* are the permissions of `actions:` (/run).
            known = action in ACTIONS or action.endswith(".*") or action.startswith("action:")
            if action != "*" and not known:
                raise ValueError(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
        return value


class Permissions(Model):
    """Principals are Slack user ids (`U…`/`W…`), user group ids (`S…`) or handles (`@oncall`),
    names of `groups:` entries, or `everyone`."""

    groups: dict[str, list[str]] = Field(default_factory=dict)
    rules: list[PermissionRule] = Field(default_factory=list)
    # What happens when no rule names the action/environment.
    default: Literal["allow", "deny"] = "allow"
