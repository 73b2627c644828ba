"""Environments for RL rollouts: ``reset(row) -> observation``; ``step(action) -> StepResult(observation, reward, done)``.

- ``SingleTurnEnv``: today's rule rewards (``app.core.rewards.RULE_REWARDS``) as a one-step environment.
- ``CalculatorEnv``: GSM8K with a calculator tool. The model may write ``calc(<arithmetic>)`` in a turn; the
  environment answers with a tool message (the value, or ``error: ...`` for a call that does not parse or an
  expression that is not arithmetic) and the model continues; a turn without a call is the final answer, scored by
  the rule. After ``max_turns`` model turns the episode ends whatever the last turn said. Bad tool calls never raise.

Observations and actions are text; ``app.ppo.episodes`` turns them into tokens (tool messages through the chat
template, loss masks with only the model's tokens).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.core.rewards import RULE_REWARDS
from app.core.tool_calls import ToolError, calculate, find_tool_call, format_number

ENVIRONMENTS = ("single_turn", "calculator")

CALC_INSTRUCTIONS = (
    "You may use a calculator: write calc(<arithmetic>), for example calc(12 * 7), and stop; the result comes back "
    "as a tool message. When you know the result, reply 'The answer is <number>.'"
)


@dataclass
class StepResult:
    """What the environment says after one model turn. ``observation`` is the tool message (None when done)."""

    observation: str | None
    reward: float
    done: bool
    info: dict = field(default_factory=dict)


class SingleTurnEnv:
    """One model turn scored by a rule reward ``(response, reference) -> float``."""

    def __init__(self, rule: str = "gsm8k"):
        if rule not in RULE_REWARDS:
            raise ValueError(f"unknown reward rule {rule!r} (known: {', '.join(sorted(RULE_REWARDS))})")
        self.rule = RULE_REWARDS[rule]
        self.reference = ""

    def reset(self, question: str, reference: str) -> str:
        self.reference = reference
        return question

    def step(self, action: str) -> StepResult:
        return StepResult(None, float(self.rule(action, self.reference)), True, {"tool_calls": 0, "tool_errors": 0})


class CalculatorEnv:
    """GSM8K with ``calc(expr)``: tool turns until a turn without a call (the answer) or ``max_turns`` model turns."""

    def __init__(self, rule: str = "gsm8k", max_turns: int = 3):
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        self.answer_env = SingleTurnEnv(rule)
        self.max_turns = max_turns
        self.turns = self.tool_calls = self.tool_errors = 0

    def reset(self, question: str, reference: str) -> str:
        self.turns = self.tool_calls = self.tool_errors = 0
        return self.answer_env.reset(question, reference)

    def _info(self) -> dict:
        return {"turns": self.turns, "tool_calls": self.tool_calls, "tool_errors": self.tool_errors}

    def step(self, action: str) -> StepResult:
        self.turns += 1
        try:
            call = find_tool_call(action)
            observation = None if call is None else format_number(calculate(call.argument))
        except ToolError as exc:
            call, observation = True, f"error: {exc}"
            self.tool_errors += 1
        if call is None or self.turns >= self.max_turns:  # an answer, or out of turns: score what the model said
            self.tool_calls += call is not None
            result = self.answer_env.step(action)
            return StepResult(None, result.reward, True, self._info())
        self.tool_calls += 1
        return StepResult(observation, 0.0, False, self._info())


def make_env(name: str, rule: str, max_turns: int):
    """``rollout.env`` -> a fresh environment (one per episode)."""
    if name == "single_turn":
        return SingleTurnEnv(rule)
    if name == "calculator":
        return CalculatorEnv(rule, max_turns)
    raise ValueError(f"rollout.env must be one of {ENVIRONMENTS}, got {name!r}")
