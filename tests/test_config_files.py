"""opsbot.yml ergonomics: `${VAR}` in URLs, `x-…` anchors, `include:`, warnings beside errors, renamed keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import AnyHttpUrl
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.cli import main
from bot.config import EXAMPLE_CONFIG, Config, EnvUrl, check_file, files, load_config, parse_config
from bot.emulator.localserver import LocalServer
from bot.errors import ConfigError
from tests.conftest import TESTS, load_test_config

HEADER = "severities: [{name: P1, response: immediate}]\n"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def urls(config: Config) -> list[tuple[str, str]]:
    """(field, value) of every URL the config holds, as the code reads it."""
    found = []
    for name, env in config.environments.items():
        found += [(f"{name}.{c.label()}", str(c.url)) for c in env.checks if hasattr(c, "url")]
    for service, target in config.rollbacks.items():
        for name, runner in target.environments.items():
            for key in ("url", "api_url"):
                if hasattr(runner, key):
                    found.append((f"{service}.{name}.{key}", str(getattr(runner, key))))
    if config.alerts.prometheus is not None:
        found.append(("prometheus", str(config.alerts.prometheus.url)))
    return found


# -- configs valid on main stay valid and read the same ------------------------------------------

# The example config as it was before on-call, paging and runbook fidelity (examples/opsbot.yml now shows the
# new keys): a team's file written from it must keep loading, and read the same.
BEFORE = TESTS / "configs" / "example-before-on-call.yml"


@pytest.mark.parametrize("path", [BEFORE, TESTS / "opsbot.test.yml"])
def test_existing_configs_load_unchanged(path: Path) -> None:
    config = load_config(path)
    assert config == Config.model_validate(yaml.safe_load(path.read_text()))
    raw = yaml.safe_load(path.read_text())
    checks = [c for env in (raw.get("environments") or {}).values() for c in env.get("checks", []) if "url" in c]
    read = [str(c.url) for env in config.environments.values() for c in env.checks if hasattr(c, "url")]
    # What the code requests is what pydantic's AnyHttpUrl made of the URL before (normalised the same way).
    assert read == [str(AnyHttpUrl(c["url"])) for c in checks]
    assert read or path != BEFORE
    assert all("${" not in value for _field, value in urls(config))
    assert check_file(path, env={"PROMETHEUS_TOKEN": "t"})[0] == []


def test_the_example_config_loads_from_its_file_and_from_parsed_yaml() -> None:
    assert load_config(EXAMPLE_CONFIG) == parse_config(yaml.safe_load(EXAMPLE_CONFIG.read_text()))
    assert check_file(EXAMPLE_CONFIG)[0] == []


# -- ${VAR} inside URLs ---------------------------------------------------------------------------

async def _health(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def test_a_url_with_a_variable_is_requested_substituted(make_bot: Any, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    async with LocalServer(Starlette(routes=[Route("/api/health", _health)])) as server:
        monkeypatch.setenv("OPSBOT_TEST_API_URL", server.url)
        config = load_test_config({"environments": {"prod": {"default": True, "checks": [
            {"name": "api", "url": "${OPSBOT_TEST_API_URL}/api/health", "expect_json": {"status": "ok"}}]}}})
        check = config.environments["prod"].checks[0]
        assert isinstance(check.url, EnvUrl) and str(check.url) == "${OPSBOT_TEST_API_URL}/api/health"
        bot = await make_bot(config=config)
        await bot.command("/health", "prod")
        text = bot.ephemeral_texts()[-1]
        assert "✅ *prod* is healthy" in text, text
        assert server.url not in text  # the label shows the URL as written, not the variable's value


def test_a_url_invalid_once_substituted_is_refused_at_load_naming_field_and_variable() -> None:
    data = {"severities": [{"name": "P1"}], "environments": {"prod": {"checks": [
        {"name": "api", "url": "${API_HOST}/health"}]}}}
    with pytest.raises(ConfigError) as info:
        parse_config(data, env={"API_HOST": "api.internal:8080"})
    assert info.value.problems == [
        "environments.prod.checks[0].url: not a valid URL once ${API_HOST} is substituted"]
    assert "api.internal" not in str(info.value)  # the value is never quoted
    assert str(parse_config(data, env={"API_HOST": "https://api.internal:8080"}).environments["prod"].checks[0]
               .url.reveal({"API_HOST": "https://api.internal:8080"})) == "https://api.internal:8080/health"


def test_config_check_names_file_field_and_problem_for_a_url_variable(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "opsbot.yml", HEADER + "environments:\n  prod:\n    checks:\n"
                 "      - {name: api, url: '${API_BASE}/health'}\n"
                 "flags:\n  checkout:\n    environments:\n      prod:\n"
                 "        {provider: http, url: '${FLAGS_API}/flags', state_url: '${FLAGS_API}/flags/state'}\n")
    monkeypatch.setenv("API_BASE", "not a host")
    monkeypatch.delenv("FLAGS_API", raising=False)
    assert main(["config", "check", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}: error: environments.prod.checks[0].url: not a valid URL once ${{API_BASE}} is substituted" in out
    assert f"{path}: warning: flags.checkout.environments.prod.url: environment variable FLAGS_API is not set" in out
    monkeypatch.setenv("API_BASE", "http://127.0.0.1:9")
    assert main(["config", "check", str(path)]) == 0
    assert "environment variable FLAGS_API is not set" in capsys.readouterr().out


def test_an_unset_url_variable_is_told_when_used_without_its_value() -> None:
    url = EnvUrl("${NOPE_BASE:-}/x")
    with pytest.raises(ConfigError) as info:
        url.reveal({}, where="rollbacks.api.environments.prod.url")
    assert info.value.problems == [
        "rollbacks.api.environments.prod.url: not a valid URL once ${NOPE_BASE} is substituted"]
    with pytest.raises(ConfigError, match="NOPE is not set"):
        EnvUrl("https://${NOPE}/x").reveal({})


# -- x-… keys --------------------------------------------------------------------------------------

def test_top_level_x_keys_hold_anchors_and_are_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, "opsbot.yml", HEADER + (
        "x-auth: &auth\n  Authorization: 'Bearer ${MONITORING_TOKEN}'\n"
        "x-anything: {whatever: [1, 2]}\n"
        "environments:\n  prod:\n    checks:\n"
        "      - {name: a, url: 'https://a.example/health', headers: *auth}\n"
        "      - {name: b, url: 'https://b.example/health', headers: {<<: *auth, X-Extra: '1'}}\n"))
    config = load_config(path)
    a, b = config.environments["prod"].checks
    assert a.headers["Authorization"].reveal({"MONITORING_TOKEN": "t"}) == "Bearer t"  # type: ignore[union-attr]
    assert set(b.headers) == {"Authorization", "X-Extra"}  # type: ignore[union-attr]
    # Only top-level x- keys are free-form: elsewhere an unknown key is still a typo.
    bad = write(tmp_path, "bad.yml", HEADER + "environments:\n  prod:\n    x-note: 1\n")
    assert check_file(bad)[0] == ["environments.prod.x-note: unknown field (check the spelling)"]


# -- include: --------------------------------------------------------------------------------------

RULE = ("    - name: {name}\n      source: http_json\n      query: https://api.example/metrics\n"
        "      path: errors\n      warning: '> 5'\n")


def test_include_merges_mappings_and_concatenates_named_lists(tmp_path: Path) -> None:
    write(tmp_path, "alerts/alert-rules.yml", "alerts:\n  rules:\n" + RULE.format(name="from_pack")
          + "environments:\n  staging:\n    checks: [{name: api, url: 'https://staging.example/health'}]\n")
    main_file = write(tmp_path, "opsbot.yml", HEADER + "include: [alerts/alert-rules.yml]\n"
                      "alerts:\n  escalate_to: ['@oncall']\n  rules:\n" + RULE.format(name="own")
                      + "environments:\n  prod:\n    default: true\n")
    config = load_config(main_file)
    assert [r.name for r in config.alerts.rules] == ["own", "from_pack"]
    assert config.alerts.escalate_to == ["@oncall"]
    assert set(config.environments) == {"prod", "staging"}


def test_the_example_rule_pack_merges_into_a_config(tmp_path: Path) -> None:
    pack = EXAMPLE_CONFIG.parent / "alert-rules.yml"
    main_file = write(tmp_path, "opsbot.yml", HEADER + f"include: [{pack}]\n")
    config = load_config(main_file)
    assert len(config.alerts.rules) == len(yaml.safe_load(pack.read_text())["alerts"]["rules"])


def test_a_key_defined_in_two_files_is_an_error_naming_both(tmp_path: Path) -> None:
    write(tmp_path, "more.yml", "alerts:\n  prometheus: {url: 'http://b:9090'}\n  rules:\n"
          + RULE.format(name="dup"))
    main_file = write(tmp_path, "opsbot.yml", HEADER + "include: [more.yml]\nalerts:\n"
                      "  prometheus: {url: 'http://a:9090'}\n  rules:\n" + RULE.format(name="dup"))
    errors, _ = check_file(main_file)
    assert errors == [
        f"alerts.prometheus.url: defined in both {main_file} and more.yml (only mappings and lists of named "
        "items are merged)",
        f"alerts.rules: 'dup' is defined in both {main_file} and more.yml",
    ]


def test_include_cycles_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "a.yml", "include: [b.yml]\n")
    write(tmp_path, "b.yml", "include: [a.yml]\n")
    main_file = write(tmp_path, "opsbot.yml", HEADER + "include: [a.yml]\n")
    errors, _ = check_file(main_file)
    assert errors == ["b.yml: include: a.yml: include cycle (a.yml -> b.yml -> a.yml)"]
    write(tmp_path, "self.yml", HEADER + "include: [self.yml]\n")
    assert check_file(tmp_path / "self.yml")[0] == ["include: self.yml: include cycle (self.yml -> self.yml)"]


def test_an_error_in_an_included_file_names_that_file_and_field(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, "rules.yml", "alerts:\n  rules:\n" + RULE.format(name="ok")
          + "    - {name: bad, source: http_json, query: x, warning: 'soon'}\n")
    write(tmp_path, "broken.yml", "alerts: [unclosed\n")
    main_file = write(tmp_path, "opsbot.yml", HEADER + "include: [rules.yml]\nenvironments:\n  prod:\n"
                      "    checks: [{name: api, url: nope}]\n")
    errors, _ = check_file(main_file)
    assert "environments.prod.checks[0].url: not a valid URL" in errors  # the main file's own: no file named
    assert any(e.startswith("alerts.rules[1].warning: ") and e.endswith(" (in rules.yml)") for e in errors), errors
    main_file.write_text(HEADER + "include: [broken.yml, missing.yml]\n")
    assert main(["config", "check", str(main_file)]) == 1
    assert f"{main_file}: error: broken.yml: line 2, column 1: not valid YAML" in capsys.readouterr().out
    main_file.write_text(HEADER + "include: [missing.yml]\n")
    assert check_file(main_file)[0] == ["missing.yml: cannot read the file: No such file or directory"]


# -- warnings beside errors, --strict, renamed keys ---------------------------------------------------

def test_warnings_are_shown_with_errors_and_labelled_errors_under_strict(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_TOKEN", raising=False)
    path = write(tmp_path, "opsbot.yml", HEADER + "environments:\n  prod:\n    checks:\n"
                 "      - {name: api, url: 'https://x.example/health', headers: {Authorization: '${NOPE_TOKEN}'}}\n"
                 "      - {name: web, url: 'https://x.example/', expect_stauts: 200}\n")
    assert main(["config", "check", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}: error: environments.prod.checks[1].expect_stauts: unknown field" in out
    assert f"{path}: warning: environments.prod.checks[0].headers.Authorization: environment variable NOPE_TOKEN" \
           in out
    assert main(["config", "check", "--strict", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}: error: environments.prod.checks[0].headers.Authorization: environment variable NOPE_TOKEN" \
           in out and "warning:" not in out


RENAMES = [(("rollbacks", "*", "environments", "*"), "verify_checks", "verify"), ((), "channel", "channels")]


def test_renamed_keys_are_accepted_with_a_deprecation_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    data = {"channel": {"alerts": "#a"}, "rollbacks": {"api": {"environments": {"prod": {"verify_checks": ["x"]}}}}}
    assert files.renamed(data, RENAMES) == [
        "rollbacks.api.environments.prod.verify_checks: deprecated, renamed to `verify` (the old name still "
        "works for now)",
        "channel: deprecated, renamed to `channels` (the old name still works for now)"]
    assert data == {"channels": {"alerts": "#a"}, "rollbacks": {"api": {"environments": {"prod": {"verify": ["x"]}}}}}
    with pytest.raises(ConfigError, match="renamed to `channels`, and `channels` is set too"):
        files.renamed({"channel": {}, "channels": {}}, RENAMES)

    monkeypatch.setattr(files, "RENAMED_KEYS", RENAMES)
    path = write(tmp_path, "opsbot.yml", HEADER + "channel: {alerts: '#ops-alerts'}\n")
    assert load_config(path).channels.alerts == "#ops-alerts"
    assert main(["config", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{path}: warning: channel: deprecated, renamed to `channels`" in out and "OK (1 warning(s))" in out
    assert main(["config", "check", "--strict", str(path)]) == 1
    assert f"{path}: error: channel: deprecated" in capsys.readouterr().out



def test_a_url_repr_shows_no_path_query_or_credentials() -> None:
    assert repr(EnvUrl("https://user:pw@hooks.example/T0/B0/s3cret?token=t")) == "EnvUrl(https://hooks.example/…)"
    assert repr(EnvUrl("${SECRET_HOOK}")) == "EnvUrl(***)"


def test_a_commands_program_is_never_a_placeholder() -> None:
    """Rollbacks and actions alike: what runs is written in the config, only its arguments are filled in."""
    rollback = {"rollbacks": {"api": {"environments": {"prod": {"provider": "command", "argv": ["{version}"]}}}}}
    action = {"actions": {"restart": {"environments": {"prod": {"type": "command", "argv": ["{container}", "x"]}}}}}
    for section in (rollback, action):
        data = {**yaml.safe_load((TESTS / "opsbot.test.yml").read_text()), **section}
        with pytest.raises(ConfigError) as info:
            parse_config(data)
        assert any("the program (argv[0]) cannot be a placeholder" in p for p in info.value.problems), section
