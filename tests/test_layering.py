"""app.core is pure: it imports with Ray (and I/O-heavy libraries) blocked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import app

CORE = Path(app.__file__).parent / "core"


def test_core_imports_without_ray():
    modules = sorted(p.stem for p in CORE.glob("*.py") if p.stem != "__init__")
    code = (
        "import sys\n"
        "for blocked in ('ray', 'mlflow', 'fsspec', 'sqlalchemy', 'fastapi', 'requests'):\n"
        "    sys.modules[blocked] = None\n"
        "import importlib\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module('app.core.' + m)\n"
        "print('ok', len(sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")


def test_no_grab_bag_modules():
    root = Path(app.__file__).parent
    bad = [p for p in root.rglob("*.py") if p.stem in {"utils", "helpers", "misc", "common_utils"}]
    assert not bad, f"grab-bag modules are not allowed: {bad}"
