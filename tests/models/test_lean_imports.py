"""A training worker's imports skip what training never calls (app/models/lean_imports.py), and nothing it uses.

One fresh interpreter (the blocks are process-wide): after ``skip_unused_imports()`` transformers' model code loads
without scikit-learn and reports it unavailable; ``import_deepspeed()`` loads DeepSpeed with its autotuner's MLflow
switched off, and MLflow still imports afterwards (the step reporter needs it when tracking is on).
"""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import json, sys
from app.models.lean_imports import import_deepspeed, skip_unused_imports
blocked = skip_unused_imports()
from transformers import AutoModelForCausalLM
import transformers.generation.candidate_generator  # the module that imports sklearn when it is installed
from transformers.utils import is_sklearn_available
deepspeed = import_deepspeed()
from deepspeed.autotuning import autotuner
before_mlflow = 'mlflow' in sys.modules
import mlflow
print(json.dumps({"blocked": blocked, "sklearn_loaded": sys.modules.get("sklearn") is not None,
                  "sklearn_available": is_sklearn_available(), "ds_has_mlflow": autotuner.has_mlflow,
                  "mlflow_before": before_mlflow, "mlflow_ok": hasattr(mlflow, "log_metrics"),
                  "again": skip_unused_imports()}))
"""


def test_training_imports_skip_sklearn_and_deepspeeds_mlflow():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == {"blocked": ["sklearn"], "sklearn_loaded": False, "sklearn_available": False, "ds_has_mlflow": False,
                   "mlflow_before": False, "mlflow_ok": True, "again": []}


def test_an_already_imported_package_is_left_alone():
    proc = subprocess.run([sys.executable, "-c", "import sklearn, json\nfrom app.models.lean_imports import skip_unused_imports\n"
                           "import sys\nprint(json.dumps([skip_unused_imports(), sys.modules['sklearn'] is not None]))"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [[], True]
