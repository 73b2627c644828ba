"""Run by .venv-cloud/bin/python (SkyPilot cannot share the main env): parse task YAMLs with SkyPilot itself.

    python tests/scale/sky_parse.py FILE...   ->  one JSON line per file: {"file", "ok", "error" | task summary}
"""

import json
import sys

import sky

for path in sys.argv[1:]:
    try:
        task = sky.Task.from_yaml(path)
        resources = list(task.resources)
        summary = {
            "num_nodes": task.num_nodes,
            "envs": dict(task.envs),
            "run": task.run if isinstance(task.run, str) else None,
            "setup": task.setup,
            "service": task.service is not None,
            "use_spot": sorted({bool(r.use_spot) for r in resources}),
            "accelerators": sorted({k for r in resources for k in (r.accelerators or {})}),
            "clouds": sorted({str(r.cloud) for r in resources if r.cloud is not None}),
            "job_recovery": [r.job_recovery for r in resources][0],
            "ordered": not isinstance(task.resources, (set, frozenset)),
        }
        print(json.dumps({"file": path, "ok": True, **summary}, default=str))
    except Exception as exc:  # noqa: BLE001 - every parse failure is reported back to the test
        print(json.dumps({"file": path, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}))
