"""The status page's block and action ids (in the incident update modal)."""

from __future__ import annotations

from enum import StrEnum


class Field(StrEnum):
    """Modal inputs: the block_id and the action_id are the same string."""

    PUBLISH = "status_page_publish"
    MESSAGE = "status_page_message"


PUBLISH_VALUE = "publish"
