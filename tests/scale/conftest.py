"""Validators for the scale-out files: KubeRay CRD schemas (strict, like `kubectl --validate=strict`), the ray-up
JSON schema Ray ships, and SkyPilot's own parser run in the separate .venv-cloud."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from app.config.paths import REPO_ROOT

KUBERAY_CRDS = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml", "RayService": "ray.io_rayservices.yaml"}


def strict_schema(schema):
    """Close every object schema that lists ``properties`` and does not opt into unknown fields.

    The API server prunes unknown fields silently; with strict field validation (kubectl's default since 1.27 is
    to warn, ``--validate=strict`` to fail) a misspelt key is an error. We want the error.
    """
    if isinstance(schema, dict):
        out = {k: strict_schema(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict_schema(v) for v in schema]
    return schema


@pytest.fixture(scope="session")
def kuberay_validate(shared):
    """``validate(manifest)`` -> list of error strings, against the KubeRay v1.7.0 CRD of the manifest's kind/version."""
    import jsonschema

    folder = Path(shared) / "schemas" / "kuberay"
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are 1-1.4 MB of YAML: use libyaml
    validators: dict = {}

    def validator_for(api_version: str, kind: str):
        if (api_version, kind) not in validators:
            crd = yaml.load((folder / KUBERAY_CRDS[kind]).read_text(), Loader=loader)
            assert crd["spec"]["names"]["kind"] == kind
            for version in crd["spec"]["versions"]:
                schema = strict_schema(version["schema"]["openAPIV3Schema"])
                validators[(f"{crd['spec']['group']}/{version['name']}", kind)] = jsonschema.Draft7Validator(schema)
        return validators.get((api_version, kind))

    def validate(manifest: dict) -> list[str]:
        kind = manifest.get("kind")
        validator = validator_for(manifest.get("apiVersion"), kind) if kind in KUBERAY_CRDS else None
        if validator is None:
            return [f"no KubeRay CRD for apiVersion {manifest.get('apiVersion')!r} kind {kind!r}"]
        return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(manifest)]

    return validate


@pytest.fixture(scope="session")
def ray_up_validate():
    """``validate(config)`` -> list of errors: Ray's cluster-launcher JSON schema, then Ray's own config checks."""
    import jsonschema
    import ray
    from ray.autoscaler._private.util import prepare_config, validate_config

    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    validator = jsonschema.Draft7Validator(schema)

    def validate(config: dict) -> list[str]:
        errors = [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(config)]
        if not errors:
            try:
                validate_config(prepare_config(copy.deepcopy(config)))
            except Exception as exc:  # noqa: BLE001 - Ray raises ValueError/RuntimeError/jsonschema errors
                errors.append(f"ray validate_config: {exc}")
        return errors

    return validate


@pytest.fixture(scope="session")
def sky_parse():
    """``parse(paths)`` -> {path: result} using SkyPilot 0.14.1's ``sky.Task.from_yaml`` in .venv-cloud."""
    python = REPO_ROOT / ".venv-cloud" / "bin" / "python"
    if not python.exists():
        pytest.skip(".venv-cloud (skypilot==0.14.1) is absent: create it with `bash .ci/env true`")
    script = Path(__file__).parent / "sky_parse.py"

    def parse(paths) -> dict[str, dict]:
        out = subprocess.run([str(python), str(script), *map(str, paths)], capture_output=True, text=True, timeout=300,
                             cwd=REPO_ROOT)
        assert out.returncode == 0, out.stderr[-3000:]
        results = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
        return {r["file"]: r for r in results}

    return parse
