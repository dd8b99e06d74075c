"""Who may do what where, from `permissions:` in opsbot.yml."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bot.config import Config, PermissionRule


class MembershipUnknown(Exception):
    """The directory could not say who is in `principal` (Slack did not answer a fresh lookup)."""

    def __init__(self, principal: str) -> None:
        self.principal = principal
        super().__init__(principal)


class MemberLookup(Protocol):
    async def members(self, principal: str, *, fresh: bool = False) -> frozenset[str]:
        """Members of a group; `fresh` skips any cache and raises MembershipUnknown when it cannot answer."""
        ...


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


def _matches(pattern_list: list[str], value: str) -> bool:
    for pattern in pattern_list:
        if pattern == "*" or pattern.lower() == value.lower():
            return True
        if pattern.endswith((".*", ":*")) and value.startswith(pattern[:-1]):  # incident.*, action:*
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

    async def is_member(self, user_id: str, principal: str, *, fresh: bool = False) -> bool:
        if principal == "everyone":
            return True
        if principal == user_id:
            return True
        group = self.config.permissions.groups.get(principal)
        if group is not None:
            for entry in group:
                if entry != principal and await self.is_member(user_id, entry, fresh=fresh):
                    return True
            return False
        if principal.startswith(("U", "W")):
            return False
        return user_id in await self.directory.members(principal, fresh=fresh)

    async def decide(self, user_id: str, action: str, environment: str | None = None, *,
                     fresh: bool = False) -> Decision:
        """May `user_id` do `action`? `fresh` (the re-check right before a destructive effect) reads group
        membership from Slack now instead of a cached copy, and denies when Slack cannot answer."""
        rules = self.rules_for(action, environment)
        where = f" in {environment}" if environment else ""
        if not rules:
            allowed = self.config.permissions.default == "allow"
            return Decision(allowed, "no rule restricts this" if allowed else f"no rule allows {action}{where}")
        unknown: list[str] = []
        for rule in rules:
            for principal in rule.allow:
                try:
                    if await self.is_member(user_id, principal, fresh=fresh):
                        return Decision(True, f"allowed as {principal}")
                except MembershipUnknown as exc:  # another principal may still allow it
                    unknown.append(exc.principal)
        allowed_names = sorted({p for rule in rules for p in rule.allow})
        if unknown:
            return Decision(False, f"Slack could not confirm membership of {', '.join(sorted(set(unknown)))} "
                                   f"just now ({action}{where} is limited to {', '.join(allowed_names)}); "
                                   "nothing was changed, try again in a moment")
        return Decision(False, f"{action}{where} is limited to {', '.join(allowed_names)}")
