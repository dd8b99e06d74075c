"""`opsbot config check` for the incident sections (issue 17): `update_template` rendered against a sample
incident with undefined names as errors, severities without `response` warned about, labels accepted."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli import main
from bot.config import EXAMPLE_CONFIG, check_file, load_config

SEVERITIES = """severities:
  - {name: P1, label: Critical, description: Complete outage, response: immediate}
  - {name: P2, label: High, response: 1h}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "opsbot.yml"
    path.write_text(text)
    return path


def template(tmp_path: Path, source: str, severities: str = SEVERITIES) -> Path:
    indented = "\n".join("    " + line for line in source.splitlines())
    return write(tmp_path, f"{severities}incidents:\n  update_template: |\n{indented}\n")


def test_a_misspelt_field_is_an_error_naming_the_line_and_the_field(tmp_path: Path) -> None:
    path = template(tmp_path, "INCIDENT: {{ incident.title }}\nService: {{ incident.servce }}")
    errors, _ = check_file(path)
    assert len(errors) == 1
    assert errors[0].startswith("incidents.update_template: line 2: incident.servce is not defined; incident has: ")
    assert "service" in errors[0] and "commander_id" in errors[0]
    load_config(path)  # the config still loads: at run time the bundled template stands in (and says so)


@pytest.mark.parametrize(("source", "problem"), [
    ("{{ incidnt.title }}", "line 1: incidnt is not defined; the names are: duration, events, incident, severity, "
                            "updates"),
    ("{% for u in updates %}{{ u.txt }}{% endfor %}", "line 1: update.txt is not defined; update has: actor, at, "
                                                      "status, text"),
    ("{{ severity.lable }}", "line 1: severity.lable is not defined; severity has: description, label, name, "
                             "response, shown"),
    # Only in a resolved incident's branch: the sample is rendered resolved too.
    ("{% if incident.resolved_at %}{{ incident.resolutoin }}{% endif %}", "line 1: incident.resolutoin is not"),
])
def test_undefined_names_anywhere_in_the_template(tmp_path: Path, source: str, problem: str) -> None:
    errors, _ = check_file(template(tmp_path, source))
    assert len(errors) == 1 and errors[0].startswith(f"incidents.update_template: {problem}"), errors


def test_a_template_using_every_field_passes(tmp_path: Path) -> None:
    source = ("{{ incident.ref }} {{ incident.service }} {{ incident.environment }} {{ incident.impact }} "
              "{{ incident.eta }} {{ incident.description }} <@{{ incident.commander_id }}> {{ severity.shown }}\n"
              "{% for u in updates %}{{ u.at | hhmm }} {{ u.status }} {{ u.text }} {{ u.actor }}\n{% endfor %}"
              "{% if incident.x is defined %}{{ incident.x }}{% endif %}{{ duration or '' }}")
    assert check_file(template(tmp_path, source)) == ([], [])


def test_the_cli_fails_on_a_bad_template(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = template(tmp_path, "{{ incident.servce }}")
    assert main(["config", "check", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}: error: incidents.update_template: line 1: incident.servce is not defined" in out


def test_a_severity_without_response_is_a_warning_not_an_error(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "severities:\n  - {name: P1, response: immediate}\n  - {name: P4, label: Low}\n")
    errors, warnings = check_file(path)
    assert errors == []
    assert warnings == ["severities.P4.response: not set, so it defaults to 24h; set it from your runbook's severity "
                        "table"]
    assert main(["config", "check", str(path)]) == 0  # valid today, valid still
    assert "warning: severities.P4.response: not set" in capsys.readouterr().out
    assert main(["config", "check", "--strict", str(path)]) == 1


def test_the_example_config_has_no_incident_problems() -> None:
    errors, warnings = check_file(EXAMPLE_CONFIG)
    assert errors == []
    assert not [w for w in warnings if w.startswith(("severities.", "incidents."))]


def test_label_is_shown_beside_the_name(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, SEVERITIES))
    assert [s.shown for s in config.severities] == ["P1 (Critical)", "P2 (High)"]
