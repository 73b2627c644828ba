"""Environments: the single-turn rule adapter and the calculator GSM8K environment (pure python, no Ray)."""

from app.ppo.env import CalculatorEnv, SingleTurnEnv, make_env

REF = "12 * 7 = 84\n#### 84"


def test_single_turn_adapter_scores_with_the_rule():
    env = SingleTurnEnv("gsm8k")
    assert env.reset("What is 12 * 7?", REF) == "What is 12 * 7?"
    r = env.step("The answer is 84.")
    assert (r.observation, r.reward, r.done) == (None, 1.5, True)  # exact match 1 + format 0.5
    assert env.step("The answer is 85.").reward == 0.5


def test_calculator_round_trip():
    env = CalculatorEnv("gsm8k", max_turns=3)
    env.reset("What is 12 * 7?", REF)
    r = env.step("Let me compute calc(12 * 7)")
    assert (r.observation, r.reward, r.done) == ("84", 0.0, False)
    r = env.step("The answer is 84.")
    assert (r.observation, r.reward, r.done) == (None, 1.5, True)
    assert r.info == {"turns": 2, "tool_calls": 1, "tool_errors": 0}


def test_bad_calls_are_error_observations_not_exceptions():
    env = CalculatorEnv("gsm8k", max_turns=4)
    env.reset("q", REF)
    for action, expected in [("calc(__import__('os'))", "error: only arithmetic"), ("calc(1/0)", "error: division by zero"),
                             ("calc(3 *", "error: calc( is never closed")]:
        r = env.step(action)
        assert not r.done and r.observation.startswith(expected), (action, r.observation)
    assert env.tool_errors == 3


def test_tool_loop_is_capped_by_max_turns():
    env = make_env("calculator", "gsm8k", 2)
    env.reset("q", REF)
    assert not env.step("calc(1+1)").done
    r = env.step("calc(2+2)")  # the second model turn is the last one: the episode ends, scored as an answer
    assert r.done and r.observation is None and r.reward == 0.0 and r.info["turns"] == 2


def _scripted(tokenizer, turns):
    """A stand-in policy that says ``turns[k]`` (plus EOS) at turn k, with log-prob -0.5 per token."""
    def generate(contexts, turn):
        ids = tokenizer.encode(turns[turn], add_special_tokens=False) + [tokenizer.eos_token_id]
        return [(ids, [-0.5] * len(ids)) for _ in contexts]
    return generate


def test_episode_tokens_mask_only_model_turns(tiny_model_dir):
    from transformers import AutoTokenizer

    from app.ppo.episodes import ToolGlue, run_episodes

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    glue = ToolGlue.from_tokenizer(tok)
    assert (glue.turn_end, glue.open, glue.close) == ("<|im_end|>", "\n<|im_start|>tool\n", "<|im_end|>\n<|im_start|>assistant\n")
    prompt = tok.encode("<|im_start|>user\nWhat is 12 * 7?<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)
    [ep] = run_episodes([prompt], ["What is 12 * 7?"], [REF], lambda: CalculatorEnv("gsm8k", 3),
                        _scripted(tok, ["calc(12 * 7)", "The answer is 84."]), tok, glue, max_turns=3)
    assert [s[0] for s in ep.segments] == ["model", "tool", "model"]
    assert tok.decode(ep.segments[1][1]) == "\n<|im_start|>tool\n84<|im_end|>\n<|im_start|>assistant\n"
    ids, mask, logp = ep.tokens()
    n1, n_tool = len(ep.segments[0][1]), len(ep.segments[1][1])
    assert mask == [1.0] * n1 + [0.0] * n_tool + [1.0] * len(ep.segments[2][1])
    assert logp[n1:n1 + n_tool] == [0.0] * n_tool and logp[0] == -0.5
    assert ep.reward == 1.5 and ep.info["tool_calls"] == 1 and ep.text == "calc(12 * 7)\nThe answer is 84."


def test_episode_bad_call_and_turn_cap(tiny_model_dir):
    from transformers import AutoTokenizer

    from app.ppo.episodes import ToolGlue, run_episodes

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    [ep] = run_episodes([[1, 2]], ["q"], [REF], lambda: CalculatorEnv("gsm8k", 2),
                        _scripted(tok, ["calc(os.system(1))", "calc(1+1)", "never asked"]), tok,
                        ToolGlue.from_tokenizer(tok), max_turns=2)
    assert "error: only arithmetic" in tok.decode(ep.segments[1][1])
    assert len(ep.segments) == 3 and ep.done and ep.reward == 0.0 and ep.info["tool_errors"] == 1


def test_prefilled_first_turn_is_read_by_the_environment(tiny_model_dir):
    """prompts.response_prefix is in the prompt tokens; the environment must still see it as the start of turn 1."""
    from transformers import AutoTokenizer

    from app.ppo.episodes import ToolGlue, run_episodes

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    [ep] = run_episodes([[1, 2]], ["q"], [REF], lambda: CalculatorEnv("gsm8k", 2),
                        _scripted(tok, ["12 * 7)", "The answer is 84."]), tok, ToolGlue.from_tokenizer(tok),
                        max_turns=2, prefix="calc(")
    assert ep.info["tool_calls"] == 1 and "84" in tok.decode(ep.segments[1][1]) and ep.reward == 1.5
    assert ep.text == "calc(12 * 7)\nThe answer is 84."
