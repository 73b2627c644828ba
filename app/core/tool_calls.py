"""Tool calls in model text: the ``calc(expr)`` parser and a calculator that evaluates arithmetic only.

The calculator walks the ``ast`` of the expression and accepts numbers, ``+ - * / // % **``, unary ``+ -`` and
parentheses; anything else (names, calls, attributes, strings, comparisons, ...) is refused with ``ToolError``. It
never calls ``eval``. Sizes are bounded so a hostile expression cannot hang the actor (long input, huge powers,
huge intermediate numbers). Pure python.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from dataclasses import dataclass

MAX_EXPR_CHARS = 200
MAX_EXPONENT = 64
MAX_MAGNITUDE = 1e15

_CALL = re.compile(r"\bcalc\s*\(")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}


class ToolError(ValueError):
    """A tool call that does not parse, or an expression the calculator refuses; the message goes back to the model."""


@dataclass(frozen=True)
class ToolCall:
    """``name(argument)`` as written by the model; ``end`` is the character index just after the closing parenthesis."""

    name: str
    argument: str
    end: int


def find_tool_call(text: str) -> ToolCall | None:
    """The first ``calc(...)`` in ``text`` (balanced parentheses), None when the text calls no tool.

    Raises ``ToolError`` for a call that is opened but never closed.
    """
    m = _CALL.search(text)
    if m is None:
        return None
    depth, start = 1, m.end()
    for i in range(start, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return ToolCall("calc", text[start:i].strip(), i + 1)
    raise ToolError("calc( is never closed: write calc(<arithmetic>)")


def _check(value: float | int) -> float | int:
    if isinstance(value, complex):  # e.g. a negative number to a fractional power
        raise ToolError("not a real number")
    if isinstance(value, float) and not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
        raise ToolError("result too large")
    return value


def _eval(node: ast.AST) -> float | int:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _check(node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise ToolError(f"exponent {right} too large (max {MAX_EXPONENT})")
        try:
            return _check(_BINARY[type(node.op)](left, right))
        except ZeroDivisionError:
            raise ToolError("division by zero") from None
        except OverflowError:
            raise ToolError("result too large") from None
    raise ToolError(f"only arithmetic is allowed (numbers, + - * / // % **, parentheses); found {type(node).__name__}")


def calculate(expression: str) -> float | int:
    """Value of an arithmetic ``expression`` ('3 * (4 + 5)' -> 27); ``ToolError`` for anything else."""
    expr = _THOUSANDS.sub("", expression).replace("$", "").strip()  # '1,200' and '$5' as a grade-school model writes them
    if not expr:
        raise ToolError("empty expression")
    if len(expr) > MAX_EXPR_CHARS:
        raise ToolError(f"expression longer than {MAX_EXPR_CHARS} characters")
    try:
        tree = ast.parse(expr, mode="eval")
    except (SyntaxError, ValueError):
        raise ToolError(f"cannot parse {expr[:40]!r} as arithmetic") from None
    return _eval(tree)


def format_number(value: float | int) -> str:
    """27 -> '27', 27.0 -> '27', 2.5 -> '2.5', 1/3 -> '0.333333' (what the tool message shows)."""
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:.6g}"
