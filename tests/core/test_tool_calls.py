"""The calc(expr) parser and the arithmetic-only calculator: values by hand, refusals as ToolError, never eval."""

import pytest

from app.core.tool_calls import ToolError, calculate, find_tool_call, format_number


@pytest.mark.parametrize("expr, value", [
    ("3 * (4 + 5)", 27), ("7 / 2", 3.5), ("7 // 2", 3), ("7 % 4", 3), ("2 ** 10", 1024), ("-3 + +4", 1),
    ("1,200 + 300", 1500), ("$5 * 3", 15), ("0.5 * 30", 15.0),
])
def test_arithmetic(expr, value):
    assert calculate(expr) == value


@pytest.mark.parametrize("expr, message", [
    ("__import__('os').system('true')", "only arithmetic"), ("x + 1", "only arithmetic"), ("abs(-3)", "only arithmetic"),
    ("'a' * 3", "only arithmetic"), ("1 < 2", "only arithmetic"), ("[1, 2]", "only arithmetic"),
    ("(1).real", "only arithmetic"), ("1 / 0", "division by zero"), ("9 ** 9 ** 9", "too large"),
    ("2 ** 100", "too large"), ("1e999", "too large"), ("3 +", "cannot parse"), ("", "empty"),
    ("1+" * 150 + "1", "longer than"), ("(-8) ** 0.5", "not a real number"),
])
def test_refused(expr, message):
    with pytest.raises(ToolError, match=message):
        calculate(expr)


def test_find_tool_call():
    call = find_tool_call("First I compute calc(3 * (4 + 5)) then answer.")
    assert (call.name, call.argument) == ("calc", "3 * (4 + 5)")
    assert "First I compute calc(3 * (4 + 5))"[call.end - 1] == ")"
    assert find_tool_call("The answer is 27.") is None
    assert find_tool_call("recalc(2)") is None  # a word ending in calc is not a call
    with pytest.raises(ToolError, match="never closed"):
        find_tool_call("calc(3 * (4 + 5)")


def test_format_number():
    assert [format_number(x) for x in (27, 27.0, 2.5, 1 / 3)] == ["27", "27", "2.5", "0.333333"]
