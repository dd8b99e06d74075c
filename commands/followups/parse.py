"""`/incident role|roles|followup|followups …` text → a plain command (pure, no network, no database)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from bot.config import Config
from bot.errors import InvalidInput
from bot.followups.dates import parse_due
from bot.incidents.roles import role_name
from commands.incident.parse import _LEADING_REF, parse_user, safe_text

VERBS = ("role", "roles", "followup", "followups", "follow-up", "follow-ups")
USAGE = ("Usage: `/incident followup <text> [@owner] [due <date>]`, `/incident followups`, "
         "`/incident followup done <id>`, `/incident followup assign <id> @user`")


@dataclass(frozen=True)
class LifecycleCommand:
    verb: str  # role | roles | followup | followups | done | reassign
    ref: str | None = None
    role: str | None = None
    user: str | None = None
    text: str = ""
    due: str | None = None  # ISO date
    followup_id: int | None = None


def is_lifecycle_verb(text: str | None) -> bool:
    words = (text or "").split(maxsplit=1)
    return bool(words) and words[0].lower() in VERBS


def _number(word: str) -> int:
    digits = word.lstrip("#")
    if not digits.isdigit() or len(digits) > 9:
        raise InvalidInput(f"`{word}` is not a follow-up number (see `/incident followups`).")
    return int(digits)


def parse(text: str | None, config: Config, *, today: date) -> LifecycleCommand:
    words = (text or "").split()
    head, rest = words[0].lower().replace("-", ""), words[1:]
    ref = None
    if rest and _LEADING_REF.match(rest[0]):
        ref, rest = rest[0].upper(), rest[1:]
    if head == "roles":
        return LifecycleCommand("roles", ref=ref)
    if head == "followups":
        return LifecycleCommand("followups", ref=ref)
    if head == "role":
        user = parse_user(rest[1]) if len(rest) == 2 else None
        if user is None:
            names = "|".join(r.name for r in config.incidents.roles)
            raise InvalidInput(f"Usage: `/incident role <{names}> @user`")
        return LifecycleCommand("role", ref=ref, role=role_name(config, rest[0]), user=user)
    if rest and rest[0].lower() == "done":
        if len(rest) != 2:
            raise InvalidInput("Usage: `/incident followup done <id>`")
        return LifecycleCommand("done", ref=ref, followup_id=_number(rest[1]))
    if rest and rest[0].lower() == "assign":
        user = parse_user(rest[2]) if len(rest) == 3 else None
        if user is None:
            raise InvalidInput("Usage: `/incident followup assign <id> @user`")
        return LifecycleCommand("reassign", ref=ref, followup_id=_number(rest[1]), user=user)
    due = None
    for index in range(len(rest) - 1, 0, -1):  # the last `due <date>` that reads as a date
        if rest[index].lower() == "due":
            try:
                due = parse_due(rest[index + 1:], today=today).isoformat()
            except InvalidInput:
                if index == len(rest) - 1 or len(rest) - index <= 3:
                    raise
                continue
            rest = rest[:index]
            break
    owner = parse_user(rest[-1]) if rest else None
    if owner is not None:
        rest = rest[:-1]
    body = safe_text(" ".join(rest), raw=False)
    if not body:
        raise InvalidInput(USAGE)
    return LifecycleCommand("followup", ref=ref, text=body, user=owner, due=due)
