"""Every action_id, callback_id and block_id of the incident family."""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    ACKNOWLEDGE = "incident_ack"
    POST_UPDATE = "incident_update_open"
    RESOLVE = "incident_resolve_open"


class Callback(StrEnum):
    DECLARE = "incident_declare"
    UPDATE = "incident_update"
    RESOLVE = "incident_resolve"
    # Shortcuts, as in manifest.yml.
    MESSAGE_SHORTCUT = "incident_declare_message"
    GLOBAL_SHORTCUT = "incident_declare_global"


class Field(StrEnum):
    """Modal inputs: the block_id and the action_id are the same string."""

    TITLE = "title"
    SEVERITY = "severity"
    SERVICE = "service"
    ENVIRONMENT = "environment"
    IMPACT = "impact"
    DESCRIPTION = "description"
    COMMANDER = "commander"
    STATUS = "status"
    ETA = "eta"
    MESSAGE = "message"
    SUMMARY = "summary"


ACTIONS_BLOCK = "incident_actions"
