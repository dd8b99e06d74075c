"""Shared base for config models: unknown keys are errors (a typo must not be silently ignored)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def _name(value: str) -> str:
    if not NAME_RE.match(value):
        raise ValueError("use letters, digits, '.', '_' and '-' only (at most 63 characters)")
    return value


Name = Annotated[str, AfterValidator(_name)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
