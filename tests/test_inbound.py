"""Slack's requests on their way to bolt (bot/inbound.py, bot/payloads.py): signature before parsing, one parse
that gets slash commands right, interactivity payloads of a shape bolt would fail on refused with a 400."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.request.async_request import AsyncBoltRequest
from sqlalchemy import select

from bot import payloads
from bot.emulator.harness import BotHarness
from bot.emulator.signing import SlackRequests, sign

FORM = "application/x-www-form-urlencoded"


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=12), st.text(max_size=40)), max_size=8))
def test_form_parsing_agrees_with_the_standard_library(fields: list[tuple[str, str]]) -> None:
    text = urlencode(fields)
    assert payloads.parse_form(text) == dict(parse_qsl(text, keep_blank_values=True))


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="ab=&%+2F0 ", max_size=30))
def test_form_parsing_agrees_on_raw_junk_too(text: str) -> None:
    assert payloads.parse_form(text) == dict(parse_qsl(text, keep_blank_values=True))


def test_a_slash_command_mentioning_payload_is_still_a_slash_command() -> None:
    """bolt 1.30 parsed this body as an interactivity payload, found none, and dropped the command."""
    body, _ = SlackRequests("s").command("/incident", "open P1 payload service down", channel_name="payload-team")
    parsed = payloads.parse(body, FORM)
    assert parsed["command"] == "/incident" and parsed["text"] == "open P1 payload service down"
    assert parsed["channel_name"] == "payload-team"


def test_shapes_bolt_would_fail_on_are_refused_with_the_reason() -> None:
    def form(payload: str) -> bytes:
        return urlencode({"payload": payload}).encode()

    assert payloads.parse(form('{"type": "block_actions", "user": {"id": "U1"}, "trigger_id": "t", '
                               '"actions": [{"action_id": "a"}]}'), FORM)["actions"] == [{"action_id": "a"}]
    event = {"type": "event_callback", "event": {"type": "app_mention", "channel": "C1", "ts": "1.2"}}
    assert payloads.parse(json.dumps(event).encode(), "application/json") == event
    assert payloads.parse(b"", FORM) == {}
    for body, content_type, reason in [
        (form("not json"), FORM, "payload is not JSON"),
        (form("[1, 2]"), FORM, "payload is not a JSON object"),
        (form('{"type": "block_actions", "trigger_id": "t", "actions": [{}]}'), FORM,
         "block_actions with an action without a string action_id"),
        (form('{"type": "block_actions", "trigger_id": "t", "actions": []}'), FORM, "block_actions with no actions"),
        (form('{"type": "block_actions", "actions": [{"action_id": "a"}]}'), FORM, "block_actions without trigger_id"),
        (form('{"type": "block_actions", "trigger_id": "t", "user": "U1", "actions": [{"action_id": "a"}]}'), FORM,
         "payload user has no id"),
        (b'{"type": "event_callback"}', "application/json", "event_callback without event"),
        (b'{"type": "event_callback", "event": "app_mention"}', "application/json", "event is not an object"),
        (b'{"type": "event_callback", "event": {"type": 1}}', "application/json", "event is not an object with a"),
        (form('{"type": "view_submission", "view": {"type": "modal", "state": {"values": "x"}}}'), FORM,
         "state.values that is not an object of objects of objects"),
        (form('{"type": "view_submission", "view": {"type": "modal", "state": {"values": {"b": {"a": "x"}}}}}'),
         FORM, "state.values that is not an object of objects of objects"),
        (b"\xff", FORM, "body is not UTF-8"),
        (b"[" * 100_000, "application/json", "body is nested too deeply"),
        (form('{"type": "view_submission", "view": {}}'), FORM, "view_submission without a valid view"),
        (form('{"type": "shortcut"}'), FORM, "shortcut without callback_id"),
        (form('{"no": "type"}'), FORM, "payload has no type"),
        (b"{not json", "application/json", "body is not JSON"),
        (b'"a string"', "application/json", "body is not a JSON object"),
    ]:
        with pytest.raises(payloads.Malformed, match=reason):
            payloads.parse(body, content_type)


async def test_bolt_builds_the_same_request_from_our_parsed_body() -> None:
    """bot/inbound.py hands bolt the parsed body as a Socket Mode request; this holds bolt to seeing exactly what
    it would have seen in HTTP mode (body, context, retry headers), for each kind of request opsbot serves."""
    requests = SlackRequests("s")
    samples = [
        requests.command("/incident", "open P1 Checkout down"),
        requests.block_action("incident.resolve", "INC-1"),
        requests.view_submission({"id": "V1", "type": "modal", "callback_id": "incident.open"},
                                 {"b": {"a": {"type": "plain_text_input", "value": "x"}}}),
        requests.event({"type": "app_mention", "user": "U0ALICE01", "text": "hi", "channel": "C1", "ts": "1.2"}),
    ]
    for body, signed in samples:
        headers = {"content-type": signed["Content-Type"], "x-slack-retry-num": "1",
                   "x-slack-retry-reason": "http_timeout"}
        ours = AsyncBoltRequest(body=payloads.parse(body, headers["content-type"]), headers=dict(headers),
                                mode="socket_mode")
        bolts = AsyncBoltRequest(body=body.decode(), headers=dict(headers), mode="http")
        assert ours.body == bolts.body
        assert dict(ours.context) == dict(bolts.context)
        assert (ours.headers, ours.content_type) == (bolts.headers, bolts.content_type)


def _app(result: AuthorizeResult | None, seen: list[dict[str, Any]]) -> AsyncApp:
    async def authorize(**_: Any) -> AuthorizeResult | None:
        return result

    app = AsyncApp(signing_secret="s", request_verification_enabled=False, authorize=authorize)

    @app.middleware
    async def note(body: dict[str, Any], next: Any) -> Any:  # bolt injects by name: `next`
        seen.append({"middleware": body.get("command")})
        return await next()

    @app.command("/incident")
    async def listener(ack: Any, command: dict[str, Any]) -> None:
        seen.append({"listener": command["text"]})
        await ack("ok")

    return app


async def test_bolt_answers_such_requests_as_it_answers_http_ones() -> None:
    """Middleware, authorization and listeners run the same for the parsed Socket Mode request as for bolt's own
    HTTP one: with an installation (the listener acks) and without (bolt's authorization refuses)."""
    body, _ = SlackRequests("s").command("/incident", "list")
    fields = payloads.parse(body, FORM)
    del fields["response_url"]  # else bolt tells a refused user through it
    body = urlencode(fields).encode()
    installed = AuthorizeResult(enterprise_id=None, team_id="T1", bot_token="xoxb-x", bot_user_id="U0BOT",
                                bot_id="B0BOT")
    for result in (installed, None):
        outcomes = []
        for request in (AsyncBoltRequest(body=body.decode(), headers={"content-type": FORM}, mode="http"),
                        AsyncBoltRequest(body=payloads.parse(body, FORM), headers={"content-type": FORM},
                                         mode="socket_mode")):
            seen: list[dict[str, Any]] = []
            response = await _app(result, seen).async_dispatch(request)
            outcomes.append((response.status, response.body, seen))
        assert outcomes[0] == outcomes[1]
        if result is installed:
            assert outcomes[0] == (200, "ok", [{"middleware": "/incident"}, {"listener": "list"}])
        else:
            assert outcomes[0][0] == 200 and "installation" in outcomes[0][1] and outcomes[0][2] == []


# -- through the real HTTP stack -------------------------------------------------------------------------

async def _post(bot: BotHarness, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    assert bot.http is not None
    response = await bot.http.post("/slack/events", content=body, headers=headers)
    return response.status_code, response.text


async def test_commands_mentioning_payload_are_answered(bot: BotHarness) -> None:
    response = await bot.command("/incident", "open P2 payload service returns 500s")
    assert response.status_code == 200
    assert bot.slack.channel("incidents").messages, "the incident was not declared"
    assert "payload service returns 500s" in str(bot.slack.channel("incidents").messages[-1])


async def test_signature_is_checked_before_the_body_is_parsed(bot: BotHarness) -> None:
    junk = b"{not json"
    calls = len(bot.slack.calls)
    assert (await _post(bot, junk, {"Content-Type": "application/json"}))[0] == 401
    status, text = await _post(bot, junk, {"Content-Type": "application/json", **sign("test-signing-secret", junk)})
    assert status == 400 and "body is not JSON" in text
    stale = sign("test-signing-secret", b"command=%2Fincident&text=list", int(time.time()) - 301)
    assert (await _post(bot, b"command=%2Fincident&text=list", {"Content-Type": FORM, **stale}))[0] == 401
    assert len(bot.slack.calls) == calls


async def test_slacks_certificate_probe_is_answered_signed_or_not(bot: BotHarness) -> None:
    probe = b"ssl_check=1&token=deprecated"
    assert await _post(bot, probe, {"Content-Type": FORM}) == (200, "")
    assert await _post(bot, probe, {"Content-Type": FORM, **sign("test-signing-secret", probe)}) == (200, "")
    assert (await _post(bot, b"ssl_check=0", {"Content-Type": FORM}))[0] == 401


async def _socket_dispatch(bot: BotHarness, body: dict[str, Any]) -> Any:
    """What bolt's Socket Mode adapter does with an envelope's payload: dispatch it already parsed."""
    return await bot.app.bolt.async_dispatch(AsyncBoltRequest(body=body, mode="socket_mode"))


async def test_socket_mode_requests_get_the_same_checks(bot: BotHarness) -> None:
    """`opsbot socket` requests skip the HTTP path, so bolt middleware gives them the shape and NUL checks (after
    bolt's own authorization middleware, which needs the envelope fields Slack's authenticated socket sends)."""
    from bot.inbound import NUL_TEXT, socket_mode_checks
    from bot.models import Incident

    bot.app.bolt.middleware(socket_mode_checks)
    general = bot.slack.channel("general")
    signed, _ = bot.requests.command("/incident", "open P1 Checkout\x00 down", channel=general.id)
    command = dict(parse_qsl(signed.decode(), keep_blank_values=True))
    answer = await _socket_dispatch(bot, command)
    await bot.settle()
    assert answer.status == 200 and json.loads(answer.body)["text"] == NUL_TEXT
    async with bot.deps.db.session() as session:
        assert (await session.scalars(select(Incident))).first() is None

    view = {"type": "view_submission", "user": {"id": "U0ALICE01"}, "team": {"id": "T0EMULATOR"},
            "trigger_id": bot.requests.new_trigger(),
            "view": {"id": "V1", "type": "modal", "callback_id": "x", "private_metadata": "",
                     "state": {"values": "not an object"}}}
    answer = await _socket_dispatch(bot, view)
    assert answer.status == 400 and "view" in answer.body

    command.update(text="open P1 Checkout down", trigger_id=bot.requests.new_trigger())
    assert (await _socket_dispatch(bot, command)).status == 200
    await bot.settle()
    async with bot.deps.db.session() as session:
        assert (await session.scalars(select(Incident))).first() is not None
