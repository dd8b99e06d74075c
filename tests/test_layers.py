"""The layering docs/DEVELOPING.md describes, read from the source: commands/ (Slack: listeners, jobs, notifiers,
Block Kit) holds no transaction and no SQL, and bot/'s domain knows neither Slack nor commands/."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# bot/'s modules at the edge: the web app and its Slack plumbing, the CLI, and the dependencies they wire.
EDGE = frozenset({"app.py", "cli.py", "deps.py", "inbound.py", "payloads.py", "slack.py", "jobs.py", "emulator"})


def _modules(package: str, *, mentioning: tuple[str, ...],
             skip: frozenset[str] = frozenset()) -> Iterator[tuple[Path, ast.Module]]:
    """The package's modules whose source mentions one of `mentioning` (only those are parsed), parsed."""
    for path in sorted((ROOT / package).rglob("*.py")):
        if path.relative_to(ROOT / package).parts[0] in skip:
            continue
        source = path.read_text()
        if any(word in source for word in mentioning):
            yield path, ast.parse(source, filename=str(path))


def _imports(tree: ast.Module) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def _transactions(tree: ast.Module) -> Iterator[int]:
    """Lines calling `<…>.db.session()` or `<…>.db.connection()`."""
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("session", "connection") and isinstance(node.func.value, ast.Attribute)
                and node.func.value.attr == "db"):
            yield node.lineno


def test_commands_open_no_transaction_and_write_no_sql() -> None:
    found = []
    for path, tree in _modules("commands", mentioning=("sqlalchemy", ".db.")):
        name = path.relative_to(ROOT)
        found += [f"{name}: imports {module}" for module in _imports(tree) if module.split(".")[0] == "sqlalchemy"]
        found += [f"{name}:{line}: opens a database transaction" for line in _transactions(tree)]
    assert found == []


def test_the_domain_knows_neither_slack_nor_commands() -> None:
    found = []
    for path, tree in _modules("bot", mentioning=("slack_bolt", "slack_sdk", "commands"), skip=EDGE):
        for module in _imports(tree):
            if module.split(".")[0] in ("slack_bolt", "slack_sdk", "commands"):
                found.append(f"{path.relative_to(ROOT)}: imports {module}")
    assert found == []


def test_the_checks_see_what_they_look_for() -> None:
    """The two checks above find an offender (so an empty answer means something)."""
    offender = ast.parse("from sqlalchemy import select\nimport slack_sdk\n"
                         "async def f(deps):\n    async with deps.db.session() as s:\n        pass\n")
    assert list(_imports(offender)) == ["sqlalchemy", "slack_sdk"]
    assert list(_transactions(offender)) == [4]
