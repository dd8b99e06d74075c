"""Arithmetic over one JSON answer, for computed alert values and thresholds: `checked_out / pool_size * 100`,
`pool_size + max_overflow`, `max(db.wait_ms, 0)`.

Parsed with `ast` and walked by hand (never `eval`): numbers, names (dotted paths into the answer:
`pool.checked_out`, `servers[0].load`), `+ - * / %`, unary minus, parentheses, and `min`, `max`, `abs`.
Anything else is refused when the config loads, with the offending piece named.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from dataclasses import dataclass

MAX_LENGTH = 500
MAX_NODES = 200
FUNCTIONS: dict[str, Callable[..., float]] = {"min": min, "max": max, "abs": abs}
_OPS: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b, ast.Mod: lambda a, b: a % b,
}


class ExpressionError(ValueError):
    """An expression that cannot be parsed, or one that cannot be computed for this answer (e.g. / 0)."""


@dataclass(frozen=True)
class Expression:
    text: str
    tree: ast.expr
    names: tuple[str, ...]

    def evaluate(self, lookup: Callable[[str], float]) -> float:
        """The value, each name read through `lookup` (which raises for a missing or non-numeric one)."""
        try:
            value = _evaluate(self.tree, lookup)
        except OverflowError:
            raise ExpressionError(f"`{self.text}` overflows for this answer") from None
        if math.isnan(value) or math.isinf(value):
            raise ExpressionError(f"`{self.text}` is not a finite number for this answer")
        return value


def parse(text: str) -> Expression:
    """A checked expression; ExpressionError says what is not allowed and where."""
    source = str(text).strip()
    if not source:
        raise ExpressionError("empty expression")
    if len(source) > MAX_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(source, mode="eval").body
    except SyntaxError as exc:
        raise ExpressionError(f"cannot parse `{source}` (at column {exc.offset or 0})") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise ExpressionError(f"`{source}` is too long an expression")
    names: list[str] = []
    _check(tree, source, names)
    return Expression(source, tree, tuple(dict.fromkeys(names)))


def _piece(node: ast.AST, source: str) -> str:
    return ast.get_source_segment(source, node) or type(node).__name__


def _where(node: ast.AST, source: str) -> str:
    piece = _piece(node, source)
    return f"`{piece}`" if piece == source else f"`{piece}` in `{source}`"


def path_of(node: ast.expr) -> str | None:
    """`a.b[0].c` as the dotted path `a.b.0.c`; None when `node` is not a name or path."""
    if isinstance(node, ast.Name):
        return None if node.id in FUNCTIONS else node.id
    if isinstance(node, ast.Attribute):
        head = path_of(node.value)
        return f"{head}.{node.attr}" if head else None
    if isinstance(node, ast.Subscript):
        head, index = path_of(node.value), node.slice
        if head and isinstance(index, ast.Constant) and isinstance(index.value, int | str) \
                and not isinstance(index.value, bool):
            return f"{head}.{index.value}"
    return None


def _check(node: ast.expr, source: str, names: list[str]) -> None:
    path = path_of(node)
    if path is not None:
        names.append(path)
        return
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ExpressionError(f"{_where(node, source)}: only numbers are allowed as constants")
        if not abs(node.value) < 1e300:  # also NaN/inf, which ast never makes but a float can hold
            raise ExpressionError(f"{_where(node, source)}: number too large")
        return
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _OPS:
            raise ExpressionError(f"{_where(node, source)}: only + - * / % are allowed")
        _check(node.left, source, names)
        _check(node.right, source, names)
        return
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        _check(node.operand, source, names)
        return
    if isinstance(node, ast.Call):
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name not in FUNCTIONS or node.keywords or not node.args or any(
                isinstance(a, ast.Starred) for a in node.args):
            raise ExpressionError(f"{_where(node, source)}: the only functions are "
                                  "min(a, b, …), max(a, b, …) and abs(a)")
        if name == "abs" and len(node.args) != 1:
            raise ExpressionError(f"{_where(node, source)}: abs takes one argument")
        for arg in node.args:
            _check(arg, source, names)
        return
    raise ExpressionError(f"{_where(node, source)} is not allowed (numbers, names, + - * / %, "
                          "parentheses, min, max, abs)")


def _evaluate(node: ast.expr, lookup: Callable[[str], float]) -> float:
    path = path_of(node)
    if path is not None:
        return float(lookup(path))
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return float(node.value)
    if isinstance(node, ast.BinOp):
        left, right = _evaluate(node.left, lookup), _evaluate(node.right, lookup)
        if isinstance(node.op, ast.Div | ast.Mod) and right == 0:
            raise ExpressionError("division by zero")
        return _OPS[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp):
        operand = _evaluate(node.operand, lookup)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return float(FUNCTIONS[node.func.id](*(_evaluate(a, lookup) for a in node.args)))
    raise ExpressionError("not an expression")  # unreachable: parse() checked the tree
