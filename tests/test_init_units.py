"""`opsbot init` pieces: the Markdown walk, the YAML writer, secrets, and drafts opsbot refuses in part."""

from __future__ import annotations

import textwrap

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.config import HttpCheck, parse_config
from bot.config.actions import CommandAction, EnumParam
from bot.init import draft
from bot.init.draft import settle
from bot.init.markdown import parse
from bot.init.template import convert
from bot.init.yamlout import Entry, Literal, Map, Seq, clean, data, render, scalar

pytestmark = pytest.mark.backend_independent  # its own SQLite database or none (tests/conftest.py)


def load(markdown: str) -> tuple[object, str]:
    result = draft(textwrap.dedent(markdown), source="RUNBOOK.md")
    return parse_config(yaml.safe_load(result.text), env={}), result.text


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_every_string_reads_back_as_written(text: str) -> None:
    assert yaml.safe_load(f"k: {scalar(text)}") == {"k": clean(text)}
    assert yaml.safe_load(f"[{scalar(text, flow=True)}]") == [clean(text)]


def test_writer_comments_and_commented_out_entries() -> None:
    root = Map()
    root.add("name", "acme", "from RUNBOOK.md:1")
    rules = Seq()
    rule = Map()
    rule.add("name", "x")
    rule.add("argv", Seq([], flow=True))
    rules.add(rule, above=["first"])
    rules.add(Map([*rule.entries]), above=["not configured"], disabled=True)
    root.add("rules", rules)
    root.add("template", Literal("  indented first line\nsecond {{ x }}\n"))
    text = render(root, ["header"])
    assert text.splitlines()[:3] == ["# header", "", "name: acme  # from RUNBOOK.md:1"]
    assert "  # not configured\n  # - name: x\n" in text
    assert yaml.safe_load(text) == data(root) == {"name": "acme", "rules": [{"name": "x", "argv": []}],
                                                 "template": "  indented first line\nsecond {{ x }}\n"}


def test_blocks_come_from_the_token_stream_not_the_text() -> None:
    doc = parse(textwrap.dedent("""\
        Title
        =====

        <!-- curl https://old.example.com/health -->

        ```text
        | Level | Response |
        |-------|----------|
        | P1    | 5m       |
        ```

        | Level | Response |
        |-------|----------|
        | SEV1  | 5m       |
        | SEV2  | 1h       |
        """))
    tables = [b for b in doc.blocks if b.kind == "table"]
    assert len(tables) == 1 and [row.line for row in tables[0].rows] == [14, 15]
    assert doc.title == "Title"
    config, text = load("\n".join(doc.lines))
    assert [s.name for s in config.severities] == ["SEV1", "SEV2"]  # type: ignore[attr-defined]
    assert "old.example.com" not in text  # an HTML comment is no command


def test_no_secret_from_the_runbook_reaches_the_draft() -> None:
    config, text = load("""\
        # Payments

        ## Health

        ```bash
        curl -H "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.c2VjcmV0" https://pay.example.com/health
        psql postgresql://app:hunter2@db.example.com/pay -c "SELECT 1"
        ```

        ## Troubleshooting

        ### Cache poisoned

        Symptoms: wrong prices

        1. Flush it: `redis-cli -a s3cr3tpass FLUSHDB`
        """)
    for secret in ("eyJhbGciOiJIUzI1NiJ9", "hunter2", "s3cr3tpass"):
        assert secret not in text
    check = config.environments["prod"].checks[0]  # type: ignore[attr-defined]
    assert isinstance(check, HttpCheck) and check.headers["Authorization"].template == "Bearer ${API_TOKEN}"
    flush = config.actions["redis-cli-flushdb"]  # type: ignore[attr-defined]
    runner = flush.environments["prod"]
    assert isinstance(runner, CommandAction) and runner.argv == ["sh", "-ec", "redis-cli -a $REDIS_PASSWORD FLUSHDB"]
    assert runner.env["REDIS_PASSWORD"].template == "${REDIS_PASSWORD}" and flush.destructive
    assert "from RUNBOOK.md:7 \"psql postgresql://app:***@db.example.com/pay" in text


def test_a_url_opsbot_would_refuse_is_left_out_and_named() -> None:
    result = draft(textwrap.dedent("""\
        # Shop

        - `curl https://shop.example.com:99999/health` returns 200
        - `curl https://shop.example.com/health` returns 200
        """))
    config = parse_config(yaml.safe_load(result.text), env={})
    assert [c.label() for c in config.environments["prod"].checks] == ["health"]
    assert any(line.startswith("line 3: `curl https://shop.example.com:99999/health`") for line in result.left_out)


def test_what_opsbot_refuses_is_commented_out_with_the_reason() -> None:
    root = Map()
    levels = Seq()
    levels.add(Map([Entry("name", "P1")]))
    root.add("severities", levels)
    checks = Seq()
    checks.add(Map([Entry("name", "api"), Entry("url", "https://api.example.com/health")]))
    checks.add(Map([Entry("name", "bad"), Entry("url", "not a url")]))
    prod = Map([Entry("checks", checks)])
    root.add("environments", Map([Entry("prod", prod)]))
    steps = Seq()
    steps.add(Map([Entry("check", "bad")]))
    steps.add("Call the vendor")
    root.add("runbooks", Map([Entry("vendor", Map([Entry("title", "Vendor down"), Entry("steps", steps)]))]))
    left: list[str] = []
    result = settle(root, [], [], left)
    config = parse_config(yaml.safe_load(result.text), env={})
    assert [c.label() for c in config.environments["prod"].checks] == ["api"]
    assert [s.text for s in config.runbooks["vendor"].steps] == ["Call the vendor"]  # the step naming it goes too
    assert "# opsbot refused this: environments.prod.checks[1].url: not a valid URL" in result.text
    assert "# - name: bad" in result.text
    assert left[0] == "commented out: environments.prod.checks[1].url: not a valid URL"


def test_a_runbook_without_levels_gets_placeholders_and_says_so() -> None:
    result = draft("# Empty\n\nNothing here.\n")
    config = parse_config(yaml.safe_load(result.text), env={})
    assert [s.name for s in config.severities] == ["P1", "P2", "P3", "P4"]
    assert any("no severity table" in line for line in result.left_out)
    assert "environments:" in result.text


def test_template_placeholders_and_literal_braces() -> None:
    template, done, kept = convert("{% raw %} and {# no comment #}\n[Service] is down since <Start time>, "
                                   "[Workaround] for now\n")
    assert "[Service]" in done and "<Start time>" in done and kept == ["[Workaround]"]
    assert '{{ incident.service or "Platform" }} is down since {{ incident.created_at | when }}' in template
    assert template.startswith("{{ '{' }}% raw %} and {{ '{' }}# no comment #}")  # printed, never run


def test_a_list_whose_items_are_all_commented_out_stays_a_list() -> None:
    root = Map()
    rules = Seq()
    rules.add(Map([Entry("name", "queue-depth")]), disabled=True)
    root.add("rules", rules)
    item = Map([Entry("a", 1, disabled=True)])
    root.add("items", Seq([Entry(None, item)]))
    text = render(root)
    assert yaml.safe_load(text) == data(root) == {"rules": [], "items": [{}]}
    assert "rules: []\n  # - name: queue-depth" in text


def test_a_placeholder_in_a_command_is_a_parameter_with_the_runbooks_own_names() -> None:
    config, _text = load("""\
        # App

        ## Troubleshooting

        ### Worker stuck

        Symptoms: jobs pile up

        1. `docker logs app-worker`
        2. `docker restart <container>`
        """)
    action = config.actions["restart-container"]  # type: ignore[attr-defined]
    param = action.params["container"]
    assert isinstance(param, EnumParam) and param.values == ["app-worker"]
    runner = action.environments["prod"]
    assert isinstance(runner, CommandAction) and runner.argv == ["docker", "restart", "{container}"]
    book = config.runbooks["worker-stuck"]  # type: ignore[attr-defined]
    assert [s.action for s in book.steps] == ["logs-app-worker", "restart-container"]
    assert book.symptoms == ["jobs pile up"]
