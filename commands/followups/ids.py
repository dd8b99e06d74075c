"""action_id, callback_id and block_id constants of roles and follow-ups."""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    ADD_FOLLOWUP = "followup_add_open"  # the postmortem's "Add follow-up" button (value: INC-n)
    PICK_ROLES = "incident_roles_open"  # the summary's "Roles" button (value: INC-n)


class Callback(StrEnum):
    ADD_FOLLOWUP = "followup_add"
    ROLES = "incident_roles"


class Field(StrEnum):
    TEXT = "followup_text"
    OWNER = "followup_owner"
    DUE = "followup_due"


def role_field(role: str) -> str:
    """The block_id/action_id of a role's user select in the roles and declare modals."""
    return f"role_{role}"
