"""Who may do what where, from `permissions:` in opsbot.yml."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bot.config import Config, PermissionRule


class MemberLookup(Protocol):
    async def members(self, principal: str) -> frozenset[str]: ...


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


def _matches(pattern_list: list[str], value: str) -> bool:
    for pattern in pattern_list:
        if pattern == "*" or pattern.lower() == value.lower():
            return True
        if pattern.endswith(".*") and value.startswith(pattern[:-1]):
            return True
    return False


class Authorizer:
    def __init__(self, config: Config, directory: MemberLookup) -> None:
        self.config = config
        self.directory = directory

    def rules_for(self, action: str, environment: str | None) -> list[PermissionRule]:
        env = environment or "*"
        return [
            rule for rule in self.config.permissions.rules
            if _matches(rule.actions, action) and (env == "*" or _matches(rule.environments, env))
        ]

    async def is_member(self, user_id: str, principal: str) -> bool:
        if principal == "everyone":
            return True
        if principal == user_id:
            return True
        group = self.config.permissions.groups.get(principal)
        if group is not None:
            for entry in group:
                if entry != principal and await self.is_member(user_id, entry):
                    return True
            return False
        if principal.startswith(("U", "W")):
            return False
        return user_id in await self.directory.members(principal)

    async def decide(self, user_id: str, action: str, environment: str | None = None) -> Decision:
        rules = self.rules_for(action, environment)
        where = f" in {environment}" if environment else ""
        if not rules:
            allowed = self.config.permissions.default == "allow"
            return Decision(allowed, "no rule restricts this" if allowed else f"no rule allows {action}{where}")
        for rule in rules:
            for principal in rule.allow:
                if await self.is_member(user_id, principal):
                    return Decision(True, f"allowed as {principal}")
        allowed_names = sorted({p for rule in rules for p in rule.allow})
        return Decision(False, f"{action}{where} is limited to {', '.join(allowed_names)}")
