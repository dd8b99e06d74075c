"""opsbot.yml: loading, validation messages with YAML paths, ${VAR} secrets, durations, `config check`."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from bot.cli import main
from bot.config import EXAMPLE_CONFIG, EnvRef, load_config, parse_config
from bot.durations import format_duration, parse_duration
from bot.errors import ConfigError, NotFound, UnknownSeverity

EXAMPLE = yaml.safe_load(EXAMPLE_CONFIG.read_text())


def problems(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.problems


def test_example_config_is_valid_and_mirrors_the_runbook() -> None:
    config = load_config(EXAMPLE_CONFIG)
    assert [s.name for s in config.severities] == ["P1", "P2", "P3", "P4"]
    assert config.severity("p1").immediate
    assert config.severity("P2").response == timedelta(hours=1)
    assert config.severity("P3").response == timedelta(hours=4)
    assert config.severity("P4").response == timedelta(hours=24)
    assert config.default_environment == "prod" and config.is_production("prod")


def test_unknown_severity_lists_valid_ones_in_order() -> None:
    config = load_config(EXAMPLE_CONFIG)
    with pytest.raises(UnknownSeverity) as info:
        config.severity("P7")
    assert info.value.valid == ["P1", "P2", "P3", "P4"]
    assert "`P1`, `P2`, `P3`, `P4`" in str(info.value)


def test_unknown_environment_lists_valid_ones() -> None:
    config = load_config(EXAMPLE_CONFIG)
    with pytest.raises(NotFound) as info:
        config.environment("qa")
    assert info.value.valid == ["prod", "staging"]


def test_bad_url_is_named_by_its_yaml_path() -> None:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["environments"]["prod"]["checks"][2]["url"] = "not a url"
    assert problems(data) == ["environments.prod.checks[2].url: not a valid URL"]


def test_every_problem_is_reported_at_once() -> None:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["severities"][1]["response"] = "soonish"
    data["environments"]["staging"]["checks"][0]["expect_stauts"] = 200
    data["flags"]["checkout"]["environments"]["prod"]["provider"] = "etcd"
    found = problems(data)
    assert any(p.startswith("severities[1].response: not a duration: 'soonish'") for p in found)
    assert "environments.staging.checks[0].expect_stauts: unknown field (check the spelling)" in found
    assert any(p.startswith("flags.checkout.environments.prod") for p in found)
    assert len(found) == 3


def test_severities_are_required_and_unique() -> None:
    assert problems({}) == ["severities: required field is missing"]
    assert problems({"severities": [{"name": "P1"}, {"name": "p1"}]}) == [
        "severities: severity names must be unique (case-insensitive)"]


def test_references_to_unknown_environments_are_errors() -> None:
    data = {"severities": [{"name": "SEV1"}], "environments": {"prod": {}},
            "flags": {"x": {"environments": ["prod", "qa"]}}}
    assert problems(data) == ["(top level): flags.x.environments.qa: no such environment"]


def test_secrets_are_env_references_resolved_when_used() -> None:
    ref = EnvRef("Bearer ${API_TOKEN}")
    assert ref.reveal({"API_TOKEN": "s3cret"}) == "Bearer s3cret"
    assert "s3cret" not in repr(ref) and "API_TOKEN" in repr(ref)
    assert EnvRef("${A:-fallback}").reveal({}) == "fallback"
    with pytest.raises(ConfigError) as info:
        ref.reveal({}, where="environments.prod.checks[0].headers.Authorization")
    assert "API_TOKEN is not set" in str(info.value)


@pytest.mark.parametrize(("text", "expected"), [
    ("immediate", timedelta(0)), ("< 1 h", timedelta(hours=1)), ("< 24 h", timedelta(hours=24)),
    ("5m", timedelta(minutes=5)), ("1h30m", timedelta(minutes=90)), ("500ms", timedelta(milliseconds=500)),
    ("7d", timedelta(days=7)), (90, timedelta(seconds=90)), ("2 hours", timedelta(hours=2)),
])
def test_durations_as_runbooks_write_them(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["soon", "5 parsecs", "-3", "m5", ""])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_duration() -> None:
    assert format_duration(timedelta(minutes=90)) == "1h 30m"
    assert format_duration(timedelta(milliseconds=250)) == "250ms"
    assert format_duration(timedelta(0)) == "0s"


def test_config_check_cli_names_file_field_and_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["environments"]["prod"]["checks"][2]["url"] = "nope"
    bad = tmp_path / "opsbot.yml"
    bad.write_text(yaml.safe_dump(data))
    assert main(["config", "check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{bad}: error: environments.prod.checks[2].url: not a valid URL" in out


def test_config_check_cli_reports_yaml_syntax_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "broken.yml"
    bad.write_text("severities:\n  - name: P1\n   description: [unclosed\n")
    assert main(["config", "check", str(bad)]) == 1
    assert "line 3" in capsys.readouterr().out


def test_config_check_cli_ok_and_strict_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "opsbot.yml"
    config.write_text("severities: [{name: P1}]\nenvironments:\n  prod:\n    checks:\n"
                      "      - url: https://x.example/health\n"
                      "        headers: {Authorization: 'Bearer ${NOPE_TOKEN}'}\n")
    monkeypatch.delenv("NOPE_TOKEN", raising=False)
    assert main(["config", "check", str(config)]) == 0
    out = capsys.readouterr().out
    assert "warning: environments.prod.checks[0].headers.Authorization: environment variable NOPE_TOKEN" in out
    assert main(["config", "check", "--strict", str(config)]) == 1


def test_missing_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(tmp_path / "absent.yml")]) == 1
    assert "cannot read the file" in capsys.readouterr().out


def test_console_script_runs() -> None:
    result = subprocess.run([sys.executable, "-m", "bot", "config", "check", str(EXAMPLE_CONFIG)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("OK") or "OK (" in result.stdout


def test_not_found_message_reads_well() -> None:
    assert str(UnknownSeverity("P9", ["P1", "P2"])) == "Unknown severity `P9`. Valid severities: `P1`, `P2`."
    assert str(NotFound("environment", "qa", ["prod"])) == "Unknown environment `qa`. Valid environments: `prod`."


def test_serve_with_a_broken_config_names_the_problem_and_exits(tmp_path: Path) -> None:
    import os

    bad = tmp_path / "opsbot.yml"
    bad.write_text("severities: []\n")
    result = subprocess.run([sys.executable, "-m", "bot", "serve", "--port", "1"], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "OPSBOT_CONFIG": str(bad)})
    assert result.returncode == 1
    assert f"{bad}: opsbot cannot start" in result.stderr and "severities:" in result.stderr
