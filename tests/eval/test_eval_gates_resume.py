"""benchmarks/eval_gates.py --resume: which adapters a resumed run gates (no model, no Ray)."""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))  # the script imports its sibling eval_gates_costs as a top-level module
    try:
        spec = importlib.util.spec_from_file_location("eval_gates_script", BENCH / "eval_gates.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.path.remove(str(BENCH))


def test_resume_gates_only_the_adapters_without_results_at_the_same_sizes(bench):
    budget = list(bench.EVAL_BUDGET)
    entries = {"good": {"gates": [], "eval_budget": budget}, "permuted": {"gates": [], "eval_budget": budget},
               "scrambled": {"not_run": "12 s left before the lock budget ends"}}
    assert bench.labels_to_gate("B", entries, False, budget) == ["good", "permuted", "scrambled"]
    assert bench.labels_to_gate("B", entries, True, budget) == ["scrambled"]
    entries["permuted"] = {"not_run": "x"}
    assert bench.labels_to_gate("B", entries, True, budget) == ["permuted", "scrambled"]  # gating order kept
    with pytest.raises(SystemExit, match="set B: --resume gates at the sizes of the run it finishes"):
        bench.labels_to_gate("B", entries, True, [*budget[:-1], "generation.batch_size=16"])
