"""Permission rules: users, groups, user group handles, everyone, default."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from bot.config import parse_config
from bot.emulator.harness import BotHarness
from bot.models import BuiltinFlag
from bot.permissions import Authorizer
from commands.flags.ids import Action
from tests.test_flags_support import ALICE, audits, buttons, flags_config, last_text, press


class Groups:
    def __init__(self, members: dict[str, set[str]]) -> None:
        self.data = members
        self.calls = 0

    async def members(self, principal: str, *, fresh: bool = False) -> frozenset[str]:
        self.calls += 1
        return frozenset(self.data.get(principal, set()))


def authorizer(default: str = "allow") -> Authorizer:
    config = parse_config({
        "severities": [{"name": "P1"}],
        "environments": {"prod": {}, "staging": {}},
        "permissions": {
            "groups": {"oncall": ["@oncall", "U0EXTRA01"]},
            "rules": [
                {"environments": ["staging"], "allow": ["everyone"]},
                {"actions": ["killswitch", "flag"], "environments": ["prod"], "allow": ["oncall"]},
                {"actions": ["incident.*"], "allow": ["S0LEADS01"]},
            ],
            "default": default,
        },
    })
    return Authorizer(config, Groups({"@oncall": {"U0ALICE01"}, "S0LEADS01": {"U0CAROL01"}}))


@pytest.mark.parametrize(("user", "action", "env", "allowed"), [
    ("U0ALICE01", "killswitch", "prod", True),     # via @oncall
    ("U0EXTRA01", "flag", "prod", True),           # listed directly in the group
    ("U0BOB0001", "killswitch", "prod", False),
    ("U0BOB0001", "killswitch", "staging", True),  # everyone
    ("U0CAROL01", "incident.resolve", "prod", True),
    ("U0BOB0001", "incident.resolve", "prod", False),
    ("U0BOB0001", "rollback", "prod", True),       # no rule: default allow
])
async def test_rules(user: str, action: str, env: str, allowed: bool) -> None:
    decision = await authorizer().decide(user, action, env)
    assert decision.allowed is allowed, decision.reason


async def test_default_deny() -> None:
    decision = await authorizer("deny").decide("U0BOB0001", "rollback", "prod")
    assert not decision.allowed and "no rule allows rollback in prod" in decision.reason


async def test_denial_names_who_may() -> None:
    decision = await authorizer().decide("U0BOB0001", "killswitch", "prod")
    assert decision.reason == "killswitch in prod is limited to oncall"


def test_unknown_action_in_config_is_an_error() -> None:
    from bot.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        parse_config({"severities": [{"name": "P1"}],
                      "permissions": {"rules": [{"actions": ["killswitches"], "allow": ["everyone"]}]}})
    assert info.value.problems[0].startswith("permissions.rules[0].actions: unknown action 'killswitches'")


# -- the confirm-time re-check reads membership fresh ------------------------------------------------

KILL = {"checkout": {"environments": ["prod"]}}


async def kill_switch_rows(bot: BotHarness) -> list[tuple[str, bool]]:
    async with bot.deps.db.session() as session:
        return [(r.name, r.kill_switch) for r in (await session.scalars(select(BuiltinFlag))).all()]


async def test_removed_from_oncall_before_confirm_is_refused(make_bot: Any) -> None:
    bot: BotHarness = await make_bot(config=flags_config(KILL))
    await bot.command("/killswitch", "checkout on prod", user=ALICE)  # allowed: alice is in @oncall (cached)
    assert "Current state" in last_text(bot)
    bot.slack.usergroups["S0ONCALL1"]["users"].remove(ALICE)  # taken off the rota a second later
    await press(bot, Action.CONFIRM)
    assert "You are not allowed to killswitch" in last_text(bot)
    assert await kill_switch_rows(bot) == []  # nothing changed
    denied = (await audits(bot))[-1]
    assert (denied.actor, denied.action, denied.outcome) == (ALICE, "killswitch", "denied")
    assert "limited to oncall" in (denied.detail or "")


async def test_confirm_is_refused_when_slack_cannot_confirm_membership(make_bot: Any) -> None:
    bot: BotHarness = await make_bot(config=flags_config(KILL))
    await bot.command("/killswitch", "checkout on prod", user=ALICE)
    token = buttons(bot)[Action.CONFIRM]
    bot.slack.fail("usergroups.users.list", status=200, error="internal_error")
    await press(bot, Action.CONFIRM, value=token)
    assert "Slack could not confirm membership of @oncall" in last_text(bot)
    assert await kill_switch_rows(bot) == []
    denied = (await audits(bot))[-1]
    assert denied.outcome == "denied" and "could not confirm" in (denied.detail or "")
    await press(bot, Action.CONFIRM, value=token)  # Slack answers again: the same confirmation now goes through
    assert await kill_switch_rows(bot) == [("checkout", True)]


async def test_fresh_lookup_failure_falls_through_to_other_principals() -> None:
    class Down(Groups):
        async def members(self, principal: str, *, fresh: bool = False) -> frozenset[str]:
            from bot.permissions import MembershipUnknown

            if fresh:
                raise MembershipUnknown(principal)
            return await super().members(principal)

    config = parse_config({"severities": [{"name": "P1"}], "environments": {"prod": {}}, "permissions": {
        "rules": [{"actions": ["killswitch"], "environments": ["prod"], "allow": ["@oncall", "U0EXTRA01"]}]}})
    auth = Authorizer(config, Down({"@oncall": {"U0ALICE01"}}))
    assert (await auth.decide("U0ALICE01", "killswitch", "prod")).allowed  # cached path: unchanged
    assert (await auth.decide("U0EXTRA01", "killswitch", "prod", fresh=True)).allowed  # named directly
    refused = await auth.decide("U0ALICE01", "killswitch", "prod", fresh=True)
    assert not refused.allowed and "Slack could not confirm membership of @oncall" in refused.reason
