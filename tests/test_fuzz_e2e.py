"""Malformed input through the real HTTP stack: every slash command in manifest.yml and interactive payloads
with garbage values get an answer (never a 500, never a silent drop of a valid request shape)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from urllib.parse import urlencode

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.emulator.harness import BotHarness
from bot.emulator.signing import sign

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [c["command"] for c in yaml.safe_load((ROOT / "manifest.yml").read_text())["features"]["slash_commands"]]
NASTY = [
    "", " ", "help", "open", "open P9 x", "open P1", "update", "'; DROP TABLE feature_flags; --", "\"unbalanced",
    "a" * 5000, "<@U0ALICE01|alice>", "<!channel> <!here>", "🔥" * 300, "\x00\x01\x02", "%s%s%n", "${HOME}",
    "{{ 7*7 }}", "{% for x in range(10**9) %}", "-1", "999999999999999999999", "to", "prod prod prod",
    "INC-0", "INC-99999999999", "INC--1", "checkout on nowhere", "rollout 101", "rollout -5", "rollout abc",
    "1e309", "NaN", "api prod to ../../etc/passwd", "api prod to $(reboot)", "\n\n\n", "\t", "all",
    "silence 5 parsecs",
]


def _words(rng: random.Random) -> str:
    pool = [*NASTY, "P1", "P2", "prod", "staging", "on", "off", "enable", "disable", "list", "show", "resolve",
            "assign", "severity", "timeline", "postmortem", "checkout", "api", "1h", "status"]
    return " ".join(rng.choice(pool) for _ in range(rng.randint(0, 6)))


async def test_every_command_answers_malformed_text_without_errors(bot: BotHarness) -> None:
    rng = random.Random(20261123)
    for command in COMMANDS:
        for text in [*NASTY, *(_words(rng) for _ in range(25))]:
            response = await bot.command(command, text, settle=False)
            assert response.status_code == 200, (command, text, response.status_code, response.text[:200])
            if response.headers.get("content-type", "").startswith("application/json"):
                body = response.json()
                assert body.get("text") or body.get("blocks") or body == {}, (command, text, body)
        await bot.settle(timeout=60)
    # Nothing reached Slack as a malformed message: the emulator validates Block Kit and would have failed.
    assert all(len(r.get("text", "")) <= 40000 for r in bot.slack.responses)


async def _interactive(bot: BotHarness, payload: object) -> int:
    body = urlencode({"payload": json.dumps(payload) if not isinstance(payload, str) else payload}).encode()
    assert bot.http is not None
    response = await bot.http.post("/slack/events", content=body, headers={
        "Content-Type": "application/x-www-form-urlencoded", **sign("test-signing-secret", body)})
    return response.status_code


def _action_ids() -> list[str]:
    """Every action_id constant defined by the command families."""
    import importlib
    import pkgutil
    from enum import Enum

    import commands

    found: set[str] = set()
    for info in pkgutil.walk_packages(commands.__path__, "commands."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Enum) and value is not Enum:
                found.update(str(member.value) for member in value)  # type: ignore[var-annotated]
    return sorted(found)


async def test_button_presses_with_garbage_values_never_fail(bot: BotHarness) -> None:
    rng = random.Random(7)
    ids = _action_ids()
    assert ids, "no action ids found"
    incidents = bot.slack.channel("incidents")
    posted = bot.slack.call("chat.postMessage", {"channel": incidents.id, "text": "x"})
    message = bot.slack.find_message(incidents.id, posted["ts"])
    for action_id in ids:
        for value in ["", "0", "-1", "INC-999999", "not json", '{"id": "x"}', "a" * 2000, rng.choice(NASTY)]:
            response = await bot.click(action_id, value, message=message, settle=False)
            expected = (400,) if "\x00" in value else (200, 404)  # a NUL reaches no listener (bot/inbound.py)
            assert response.status_code in expected, (action_id, value, response.status_code)
    await bot.settle(timeout=60)


async def test_malformed_payloads_are_rejected_cleanly(bot: BotHarness) -> None:
    for payload in ["not json", "[]", "{}", '{"type": "block_actions"}', '{"type": "view_submission", "view": {}}',
                    '{"type": "block_actions", "actions": [{}], "user": {}}', '{"type": "shortcut"}',
                    '{"type": "view_submission", "view": {"callback_id": "x", "state": {"values": {}}}, '
                    '"user": {"id": "U1"}}']:
        status = await _interactive(bot, payload)
        assert status in (200, 400, 404), (payload, status)
    await bot.settle()


async def test_view_submissions_with_empty_or_junk_state_answer_inline(bot: BotHarness) -> None:
    """Every modal callback_id the families define, submitted with nothing filled in and with junk."""
    callbacks = [i for i in _action_ids() if "modal" in i or "view" in i or "submit" in i]
    for callback in callbacks:
        view = {"id": "V0FUZZ", "type": "modal", "callback_id": callback, "private_metadata": "junk{",
                "title": {"type": "plain_text", "text": "x"}, "blocks": []}
        for values in ({}, {"b": {"a": {"type": "plain_text_input", "value": "🔥" * 3000}}}):
            response = await bot.submit(view, values, settle=False)
            assert response.status_code in (200, 404), (callback, response.status_code, response.text[:200])
    await bot.settle(timeout=60)


# -- signed payloads of every shape: never a 500 -------------------------------------------------------------

JUNK = ["", "x", "\x00", 0, -1, 10**30, 1.5, True, None, [], [1], ["x"], {}, {"id": 5}, {"type": 5}, [{}],
        {"values": "x"}, {"b": "x"}, {"b": {"a": "x"}}]


def _templates(bot: BotHarness) -> list[dict[str, object]]:
    """Real payloads of each kind opsbot listens to, decoded from what the harness would send."""
    from urllib.parse import parse_qs

    from commands.incident.ids import Callback, Field

    requests = bot.requests
    view = {"id": "V0FUZZ", "type": "modal", "callback_id": Callback.DECLARE, "hash": "1.x", "private_metadata": "{}"}
    values = {Field.TITLE: {Field.TITLE: {"type": "plain_text_input", "value": "Checkout down"}},
              Field.SEVERITY: {Field.SEVERITY: {"type": "static_select", "selected_option": {"value": "P2"}}}}
    message = {"ts": "1.000002", "text": "x", "blocks": []}
    forms = [requests.view_submission(view, values), requests.block_action("alerts.ack", "1", message=message),
             requests.block_action("rollback.approve", "1"), requests.block_action("incident_ack", "INC-1"),
             requests.shortcut(Callback.GLOBAL_SHORTCUT),
             requests.message_shortcut(Callback.MESSAGE_SHORTCUT, message, channel="C1")]
    out: list[dict[str, object]] = [json.loads(parse_qs(body.decode())["payload"][0]) for body, _ in forms]
    event, _ = requests.event({"type": "app_mention", "user": "U0ALICE01", "text": "hi", "channel": "C1", "ts": "1.2"})
    out.append(json.loads(event))
    return out


def _paths(value: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _mutate(payload: object, path: tuple[object, ...], junk: object, delete: bool) -> object:
    copy = json.loads(json.dumps(payload))
    parent = copy
    for key in path[:-1]:
        parent = parent[key]  # type: ignore[index]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = junk  # type: ignore[index]
    return copy


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
async def test_signed_payloads_of_any_shape_never_get_a_500(bot: BotHarness, data: st.DataObject) -> None:
    """A real payload with one field replaced by junk of another type (or removed), up to three times: bolt's
    context builder and matchers and opsbot's listeners either handle it or the shape check refuses it."""
    templates = _templates(bot)
    index = data.draw(st.integers(0, len(templates) - 1))
    payload: object = templates[index]
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(payload)
        if not paths:
            break
        payload = _mutate(payload, data.draw(st.sampled_from(paths)), data.draw(st.sampled_from(JUNK)),
                          data.draw(st.booleans()))
    assert isinstance(payload, dict)
    if index == len(templates) - 1:  # the event: a JSON body
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", **sign("test-signing-secret", body)}
        assert bot.http is not None
        status = (await bot.http.post("/slack/events", content=body, headers=headers)).status_code
    else:
        status = await _interactive(bot, payload)
    assert status in (200, 400, 404), (status, payload)
