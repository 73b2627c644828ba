"""What a training rank imports besides the model code: nothing it never calls.

Every rank of a 1 B model carries its imports on top of its weights (``benchmarks/init_memory.py``: ~450 MiB of torch
+ transformers' Llama per rank), so a package that is imported but never used costs each rank as much as ~50 M
bf16 parameters. Two such imports, both optional in the library that makes them:

- scikit-learn (~100 MiB RSS, with scipy and pandas): ``transformers.generation.candidate_generator`` imports
  ``sklearn.metrics.roc_curve`` whenever sklearn is installed (assisted decoding's dynamic confidence threshold),
  and that module loads with ``AutoModelForCausalLM``. transformers checks ``importlib.util.find_spec('sklearn')``,
  which answers None for a name mapped to None in ``sys.modules`` (the import system's documented way to make a
  module unimportable), so it then treats sklearn as not installed and skips only that generation feature.
- MLflow (~100 MiB, with pandas, fastapi, opentelemetry): DeepSpeed 0.19's ``import deepspeed`` reaches
  ``deepspeed.autotuning.autotuner``, which does ``try: import mlflow`` for the autotuner's own logging. The training
  ranks never run the autotuner; rayalign's step reporter imports MLflow itself, only when tracking is enabled.

    skip_unused_imports()        # first thing in a training worker (WorkerSession), before transformers' model code
    deepspeed = import_deepspeed()
"""

from __future__ import annotations

import sys
from types import ModuleType

UNUSED_IN_TRAINING = ("sklearn",)


def skip_unused_imports() -> list[str]:
    """Make the packages of ``UNUSED_IN_TRAINING`` unimportable in this process unless already imported; returns
    the names it blocked (a process that already imported one keeps it: nothing is unloaded)."""
    blocked = [name for name in UNUSED_IN_TRAINING if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    return blocked


def import_deepspeed() -> ModuleType:
    """``import deepspeed`` without the autotuner's optional MLflow import; MLflow stays importable afterwards."""
    if "deepspeed" in sys.modules:
        return sys.modules["deepspeed"]
    hide = "mlflow" not in sys.modules
    if hide:
        sys.modules["mlflow"] = None  # type: ignore[assignment]
    try:
        import deepspeed
    finally:
        if hide and "mlflow" in sys.modules and sys.modules["mlflow"] is None:
            del sys.modules["mlflow"]
    return deepspeed
