"""Permission rules: users, groups, user group handles, everyone, default."""

from __future__ import annotations

import pytest

from bot.config import parse_config
from bot.permissions import Authorizer


class Groups:
    def __init__(self, members: dict[str, set[str]]) -> None:
        self.data = members
        self.calls = 0

    async def members(self, principal: str) -> frozenset[str]:
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
