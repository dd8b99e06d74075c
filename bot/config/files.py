"""Reading opsbot.yml from disk: `include:` of other files, top-level `x-…` keys, renamed keys.

Merge rules for `include:` (paths relative to the including file, merged in the order listed):
mappings are merged key by key, lists of named items (mappings with a `name`, e.g. `alerts.rules`) are
concatenated, and anything else defined in two files is an error naming both. Where each value came from
is remembered so that a validation error in an included file names that file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bot.errors import ConfigError

# Keys opsbot no longer calls by that name: (where, old, new). `where` is a path of mapping keys, "*"
# standing for any key or list item ("" for the top level). The old key keeps working, with a warning.
# Add a line here when a key is renamed, e.g. (("rollbacks", "*", "environments", "*"), "verify_checks", "verify").
RENAMED_KEYS: list[tuple[tuple[str, ...], str, str]] = []


@dataclass
class Loaded:
    """The merged data of a config file and its includes, and what is known about where it came from."""

    data: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    # id() of a mapping or list -> the file it was written in; (id(mapping), key) -> the file that added key.
    _nodes: dict[int, str] = field(default_factory=dict)
    _keys: dict[tuple[int, str], str] = field(default_factory=dict)
    _alive: list[Any] = field(default_factory=list)  # the marked objects, so that no id() is reused

    def origin(self, loc: tuple[Any, ...]) -> str | None:
        """The file that wrote the value at a pydantic error location (union tags and such skipped)."""
        node: Any = self.data
        found = self._nodes.get(id(node))
        for part in loc:
            if isinstance(node, dict) and part in node:
                found = self._keys.get((id(node), part), found)
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                node = node[part]
            else:
                continue
            found = self._nodes.get(id(node), found)
        return found


def read(path: Path, *, display: Callable[[Path], str] | None = None) -> Loaded:
    """Read `path` with its includes; ConfigError (naming the file) on unreadable or conflicting files."""
    root = path.resolve().parent

    def show(file: Path) -> str:
        if display is not None:
            return display(file)
        try:
            return str(file.resolve().relative_to(root))
        except ValueError:
            return str(file)

    loaded = Loaded({})
    loaded.data = _read(path, stack=[], loaded=loaded, show=show, main=path)
    return loaded


def _yaml(path: Path, label: str, prefix: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{prefix}cannot read the file: {exc.strerror}"], label) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError([f"{prefix}{where}not valid YAML: {getattr(exc, 'problem', exc)}"], label) from None


def _read(path: Path, *, stack: list[Path], loaded: Loaded, show: Callable[[Path], str], main: Path) -> dict[str, Any]:
    label = str(path) if path == main else show(path)
    prefix = "" if path == main else f"{label}: "  # problems are reported under the main file's name
    data = _yaml(path, label, prefix)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{prefix}(top level): expected a mapping of sections"], label)
    # `x-…` keys hold YAML anchors (shared headers and the like); opsbot never reads them.
    data = {key: value for key, value in data.items() if not (isinstance(key, str) and key.startswith("x-"))}
    if path != main:
        _mark(data, show(path), loaded)
    includes = data.pop("include", None)
    if includes is None:
        return data
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) and i.strip() for i in includes):
        raise ConfigError([f"{prefix}include: expected a list of file paths (relative to this file)"], label)
    here = [*stack, path.resolve()]
    for name in includes:
        file = (path.parent / name).resolve()
        if file in here:
            chain = " -> ".join(show(p) for p in [*here[here.index(file):], file])
            raise ConfigError([f"{prefix}include: {name}: include cycle ({chain})"], label)
        included = _read(file, stack=here, loaded=loaded, show=show, main=main)
        problems: list[str] = []
        _merge(data, included, where="", base_file=label, other_file=show(file), loaded=loaded, problems=problems)
        if problems:
            raise ConfigError(problems, label)
    return data


def _mark(node: Any, file: str, loaded: Loaded) -> None:
    if isinstance(node, dict | list):
        if id(node) in loaded._nodes:  # a YAML alias: the same object again
            return
        loaded._nodes[id(node)] = file
        loaded._alive.append(node)
        for item in node.values() if isinstance(node, dict) else node:
            _mark(item, file, loaded)


def _named(items: list[Any]) -> bool:
    return all(isinstance(item, dict) and isinstance(item.get("name"), str) for item in items)


def _merge(base: dict[str, Any], other: dict[str, Any], *, where: str, base_file: str, other_file: str,
           loaded: Loaded, problems: list[str]) -> None:
    """Merge `other` (from other_file) into `base` in place; conflicts go to `problems` naming both files."""
    for key, value in other.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in base:
            base[key] = value
            loaded._keys[(id(base), key)] = other_file
            continue
        mine = base[key]
        owner = loaded._keys.get((id(base), key)) or loaded._nodes.get(id(mine)) or base_file
        if isinstance(mine, dict) and isinstance(value, dict):
            _merge(mine, value, where=path, base_file=owner, other_file=other_file, loaded=loaded,
                   problems=problems)
        elif isinstance(mine, list) and isinstance(value, list) and _named(mine) and _named(value):
            names = {item["name"]: loaded._nodes.get(id(item)) or owner for item in mine}
            for item in value:
                if item["name"] in names:
                    problems.append(f"{path}: {item['name']!r} is defined in both {names[item['name']]} "
                                    f"and {other_file}")
            mine.extend(value)
        else:
            problems.append(f"{path}: defined in both {owner} and {other_file} (only mappings and lists of "
                            "named items are merged)")


def renamed(data: dict[str, Any], table: list[tuple[tuple[str, ...], str, str]] | None = None) -> list[str]:
    """Move renamed keys to their new names in place; a deprecation warning for each, an error (ValueError)
    when a mapping has both names."""
    warnings: list[str] = []
    errors: list[str] = []
    for where, old, new in RENAMED_KEYS if table is None else table:
        for path, node in _walk(data, where, ""):
            if old not in node:
                continue
            at = f"{path}.{old}" if path else old
            if new in node:
                errors.append(f"{at}: renamed to `{new}`, and `{new}` is set too; keep only `{new}`")
                continue
            node[new] = node.pop(old)
            warnings.append(f"{at}: deprecated, renamed to `{new}` (the old name still works for now)")
    if errors:
        raise ConfigError(errors)
    return warnings


def _walk(node: Any, where: tuple[str, ...], path: str) -> list[tuple[str, dict[str, Any]]]:
    if not where:
        return [(path, node)] if isinstance(node, dict) else []
    head, rest = where[0], where[1:]
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if head in ("*", key):
                found += _walk(value, rest, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list) and head == "*":
        for i, value in enumerate(node):
            found += _walk(value, rest, f"{path}[{i}]")
    return found
