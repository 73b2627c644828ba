"""Rule rewards: GSM8K answer extraction, exact match and format."""

import pytest

from app.core.rewards import (
    RULE_COMPONENTS, RULE_REWARDS, answer_only_format_reward, exact_match_reward, extract_answer, format_reward,
    gsm8k_answer_only_reward, gsm8k_reward, reference_answer,
)


@pytest.mark.parametrize("text,expected", [
    ("so she has 3 + 4 = 7 apples.\n#### 7", "7"),
    ("The answer is $1,250.", "1250"),
    ("I think 12 then 15", "15"),
    ("The answer is -3.50", "-3.5"),
    ("no numbers here", None),
])
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_reference_answer_reads_gsm8k_field():
    assert reference_answer("Natalia sold 48/2 = 24 clips.\n#### 72") == "72"
    assert reference_answer("1,000") == "1000"


def test_exact_match_and_format():
    gold = "She pays 5*3 = 15\n#### 15"
    assert exact_match_reward("The answer is 15.", gold) == 1.0
    assert exact_match_reward("The answer is 16.", gold) == 0.0
    assert exact_match_reward("15.0 dollars", gold) == 1.0
    assert format_reward("The answer is 16.") == 1.0
    assert format_reward("it is 16") == 0.0
    assert gsm8k_reward("The answer is 15.", gold) == 1.5
    assert gsm8k_reward("it is 15", gold) == 1.0
    assert set(RULE_REWARDS) >= {"exact_match", "format", "gsm8k"}


def test_answer_only_reward_pays_for_stopping_after_the_number():
    gold = "She pays 5*3 = 15\n#### 15"
    assert answer_only_format_reward("The answer is 15.") == 1.0
    assert answer_only_format_reward("The answer is $1,250") == 1.0
    assert answer_only_format_reward("The answer is 15 apples.") == 0.0  # more than the answer sentence
    assert answer_only_format_reward("The answer is 4 * 2 = 8.") == 0.0  # cut-off / rambling responses
    assert answer_only_format_reward("The answer is x.") == 0.0
    assert gsm8k_answer_only_reward("The answer is 15.", gold) == pytest.approx(1.2)
    assert gsm8k_answer_only_reward("The answer is 15 dollars, since 5*3", gold) == 1.0  # first stated number counts
    assert gsm8k_answer_only_reward("The answer is 16.", gold) == pytest.approx(0.2)
    assert gsm8k_answer_only_reward("The answer is 16 since", gold) == 0.0
    for rule, parts in RULE_COMPONENTS.items():
        assert rule in RULE_REWARDS and set(parts) == {"exact_match", "format_ok"}


def test_combine_rewards_weights_and_length_penalty_by_hand():
    from app.core.rewards import combine_rewards

    comps = {"model": [0.5, -1.0, 2.0], "rule": [1.0, 0.0, 1.5]}
    # 0.5*0.5 + 2*1.0 - 0.1*max(0, 3-4) = 2.25 ; 0.5*-1 + 0 - 0.1*(6-4) = -0.7 ; 0.5*2 + 2*1.5 - 0.1*(10-4) = 3.4
    out = combine_rewards(comps, {"model": 0.5, "rule": 2.0}, [3, 6, 10], length_penalty=0.1, free_tokens=4)
    assert out == pytest.approx([2.25, -0.7, 3.4])
    assert combine_rewards(comps, {"model": 1.0}, [1, 1, 1]) == [0.5, -1.0, 2.0]  # unweighted rule: logged only
    with pytest.raises(ValueError, match="'rule' has 2 scores for 3"):
        combine_rewards({"rule": [1.0, 0.0]}, {"rule": 1.0}, [1, 2, 3])
    # short-reply guard: lengths 1 and 2 are < 3 -> -1.5 each; 3 is not: [0.5-1.5, -1.0-1.5, 2.0]
    out = combine_rewards({"model": [0.5, -1.0, 2.0]}, {"model": 1.0}, [1, 2, 3], min_tokens=3, short_penalty=1.5)
    assert out == pytest.approx([-1.0, -2.5, 2.0])
