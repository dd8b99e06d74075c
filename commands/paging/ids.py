"""Block Kit ids of `/page`."""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    CONFIRM = "page.confirm"
    CANCEL = "page.cancel"
