"""Property tests of every pure parser and renderer that sees user text: any input either parses or raises
one of opsbot's own errors (which become a clear ephemeral message); rendered blocks stay within limits."""

from __future__ import annotations

import json
import shlex
from urllib.parse import urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot import payloads
from bot.config import parse_config
from bot.durations import parse_duration
from bot.errors import OpsbotError
from commands import blocks as bk
from commands.alerts import parse_silence
from commands.common import split_args
from commands.flags import parse_flag, parse_killswitch
from commands.health import resolve_targets
from commands.incident.parse import parse as parse_incident
from commands.incident.parse import safe_text
from commands.rollback import parse as parse_rollback
from tests.conftest import load_test_config

CONFIG = load_test_config()
WORDS = st.sampled_from(["open", "update", "P1", "p2", "P9", "prod", "staging", "all", "to", "on", "off", "enable",
                         "disable", "rollout", "INC-1", "inc-0", "<@U0ALICE01|alice>", "<!channel>", "'", '"', "1h",
                         "resolved", "mitigating", "assign", "severity", "list", "-", "%", "{{x}}", "🔥"])
TEXT = st.one_of(st.text(max_size=300), st.lists(WORDS, max_size=8).map(" ".join))
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(TEXT)
def test_incident_parser_never_crashes(text: str) -> None:
    try:
        command = parse_incident(text, CONFIG)
    except OpsbotError:
        return
    assert command.verb
    if command.severity is not None:
        CONFIG.severity(command.severity)  # only configured severities get through


@FAST
@given(TEXT)
def test_flag_parsers_never_crash(text: str) -> None:
    for parser in (parse_killswitch, parse_flag):
        try:
            name, change, _env = parser(text)
        except OpsbotError:
            continue
        assert name and change.fields()


@FAST
@given(st.lists(st.one_of(WORDS, st.text(max_size=40)), max_size=6))
def test_rollback_parser_never_crashes(words: list[str]) -> None:
    try:
        _service, _env, version = parse_rollback(words)
    except OpsbotError:
        return
    assert version is None or (version[0].isalnum() and len(version) <= 128)


@FAST
@given(TEXT)
def test_silence_parser_never_crashes(text: str) -> None:
    try:
        rule, duration = parse_silence(text)
    except OpsbotError:
        return
    assert rule and duration.total_seconds() >= 0


@FAST
@given(TEXT)
def test_health_target_parser_never_crashes(text: str) -> None:
    try:
        targets = resolve_targets(CONFIG, text)
    except OpsbotError:
        return
    assert all(name in CONFIG.environments for name, _ in targets)


@FAST
@given(st.one_of(st.text(max_size=40), st.integers(), st.floats(allow_nan=True)))
def test_duration_parser_raises_only_value_errors(value: object) -> None:
    try:
        parsed = parse_duration(value)  # type: ignore[arg-type]
    except (ValueError, OverflowError):
        return
    assert parsed.total_seconds() >= 0


@FAST
@given(st.text(max_size=500))
def test_user_text_never_pings_a_whole_channel(text: str) -> None:
    for raw in (True, False):
        shown = safe_text(text, raw=raw)
        assert "<!channel>" not in shown and "<!here>" not in shown and "<!everyone>" not in shown


@FAST
@given(st.text(max_size=5000), st.integers(min_value=1, max_value=3000))
def test_cut_respects_limits(text: str, limit: int) -> None:
    out = bk.cut(text, limit)
    assert len(out) <= limit and (out == text or out.endswith("…"))


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(["severities", "environments", "flags", "alerts", "permissions", "channels"]),
                       st.one_of(st.none(), st.integers(), st.text(max_size=20), st.lists(st.text(max_size=5)),
                                 st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3))))
def test_config_errors_are_always_config_errors(data: dict[str, object]) -> None:
    try:
        parse_config(data)
    except OpsbotError as exc:
        assert str(exc)


@given(st.text(alphabet=st.characters(blacklist_characters="\"'\\"), max_size=80))
def test_split_args_fast_path_splits_like_shlex(text: str) -> None:
    # Without quotes or escapes, split_args skips shlex (it runs on every ack) and must agree with it.
    assert split_args(text) == shlex.split(text.strip())


@given(st.text(max_size=80))
def test_split_args_never_raises(text: str) -> None:
    assert all(isinstance(word, str) and word for word in split_args(text))


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                        st.sampled_from(["type", "event", "actions", "view", "state", "values", "user", "team",
                                         "channel", "action_id", "callback_id", "id", "value", "message"]),
                        inner, max_size=4), max_leaves=20)


@FAST
@given(st.one_of(st.binary(max_size=200), JSON.map(lambda v: json.dumps(v).encode()),
                 JSON.map(lambda v: urlencode({"payload": json.dumps(v)}).encode())),
       st.sampled_from(["application/x-www-form-urlencoded", "application/json"]))
def test_the_payload_parser_raises_nothing_but_malformed(body: bytes, content_type: str) -> None:
    """bot/inbound.py turns Malformed into a 400; anything else it raised would be a 500."""
    try:
        parsed = payloads.parse(body, content_type)
    except payloads.Malformed:
        return
    assert isinstance(parsed, dict)
