"""Multi-turn rollouts at the token level: model turns are sampled, environment observations are rendered as tool
messages through the chat template and appended as context, and every episode becomes one response whose loss mask
covers only the model's tokens (``app.core.multiturn.assemble_episode``).

All episodes of a batch advance turn by turn together (one batched ``generate`` per turn for the episodes still
running), so a batch costs at most ``max_turns`` generate calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from app.core.multiturn import MODEL, assemble_episode

Generate = Callable[[list[list[int]], int], list[tuple[list[int], list[float]]]]


@dataclass(frozen=True)
class ToolGlue:
    """Chat-template text around a tool message: ``turn_end`` closes an assistant turn (when the model did not emit
    EOS itself), ``open`` starts the tool message, ``close`` ends it and opens the next assistant turn."""

    turn_end: str
    open: str
    close: str

    @classmethod
    def from_tokenizer(cls, tokenizer) -> "ToolGlue":
        a, t = "@@ASSISTANT@@", "@@TOOL@@"
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": a}, {"role": "tool", "content": t}],
            tokenize=False, add_generation_prompt=True)
        after = text.split(a, 1)[1]
        before_tool, close = after.split(t, 1)
        eos = tokenizer.eos_token or ""
        turn_end = eos if eos and before_tool.startswith(eos) else ""
        return cls(turn_end, before_tool[len(turn_end):], close)


@dataclass
class Episode:
    """One rollout: ``segments`` ``(role, token_ids, logprobs)`` after the prompt, the final reward, env info."""

    segments: list[tuple[str, list[int], list[float] | None]] = field(default_factory=list)
    reward: float = 0.0
    done: bool = False
    info: dict = field(default_factory=dict)
    text: str = ""  # the model's turns, decoded, joined by newlines (what a log or a plot shows)

    def tokens(self) -> tuple[list[int], list[float], list[float]]:
        return assemble_episode(self.segments)


def run_episodes(prompt_ids: list[list[int]], questions: list[str], references: list[str], make_env: Callable,
                 generate: Generate, tokenizer, glue: ToolGlue, max_turns: int, prefix: str = "") -> list[Episode]:
    """Roll out one episode per prompt. ``generate(contexts, turn) -> [(tokens, logprobs)]`` samples one model turn per
    context (tokens cut after EOS). ``make_env()`` returns a fresh environment; ``max_turns`` caps model turns.
    ``prefix``: text the first assistant turn was pre-filled with (already in ``prompt_ids``, ``prompts.response_prefix``);
    the environment reads it as part of that turn."""
    envs = [make_env() for _ in prompt_ids]
    for env, q, ref in zip(envs, questions, references):
        env.reset(q, ref)
    episodes = [Episode() for _ in prompt_ids]
    contexts = [list(p) for p in prompt_ids]
    eos = tokenizer.eos_token_id
    for turn in range(max_turns):
        live = [i for i, e in enumerate(episodes) if not e.done]
        if not live:
            break
        outputs = generate([contexts[i] for i in live], turn)
        for i, (tokens, logps) in zip(live, outputs):
            ep = episodes[i]
            ep.segments.append((MODEL, list(tokens), list(logps)))
            contexts[i].extend(tokens)
            said = (prefix if turn == 0 else "") + tokenizer.decode(tokens, skip_special_tokens=True)
            ep.text = f"{ep.text}\n{said}" if ep.text else said
            result = envs[i].step(said)
            ep.info = result.info
            if result.done or turn == max_turns - 1:
                ep.done, ep.reward = True, result.reward
                continue
            ended = bool(tokens) and tokens[-1] == eos
            rendered = ("" if ended else glue.turn_end) + glue.open + result.observation + glue.close
            obs = tokenizer.encode(rendered, add_special_tokens=False)
            ep.segments.append(("tool", obs, None))
            contexts[i].extend(obs)
    return episodes
