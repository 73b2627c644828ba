"""Every ray-up YAML, KubeRay manifest and Serve config validates against the real schema; broken ones fail."""

from __future__ import annotations

import copy

import pytest
import yaml

from app.config.paths import REPO_ROOT

RAYCLUSTER = REPO_ROOT / "raycluster"
RAY_UP = sorted(RAYCLUSTER.glob("*.yaml"))
KUBERAY = sorted((RAYCLUSTER / "kuberay").glob("*.yaml"))


def _load(path):
    return yaml.safe_load(path.read_text())


def test_files_exist():
    assert {p.name for p in RAY_UP} >= {"aws.yaml", "gcp.yaml"}
    assert {p.name for p in KUBERAY} >= {"raycluster.yaml", "rayjob.yaml", "rayservice.yaml"}


@pytest.mark.parametrize("path", RAY_UP, ids=lambda p: p.name)
def test_ray_up_yaml_validates(path, ray_up_validate):
    config = _load(path)
    assert ray_up_validate(config) == []
    nodes = config["available_node_types"]
    head = nodes[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0  # CPU head
    gpu_groups = [n for name, n in nodes.items() if n["resources"].get("GPU", 0) > 0]
    assert gpu_groups and all(0 <= g["min_workers"] <= g["max_workers"] for g in gpu_groups)
    spot = [g["node_config"] for g in gpu_groups]
    assert all(c.get("InstanceMarketOptions", {}).get("MarketType") == "spot"
               or c.get("scheduling", {}).get("provisioningModel") == "SPOT" for c in spot)
    assert any("bash .ci/env" in cmd for cmd in config["setup_commands"])  # installs the project (README command)


@pytest.mark.parametrize(
    "breakage",
    [
        lambda c: c["available_node_types"]["head"].update(resources={"CPU": "eight"}),
        lambda c: c.update(max_wrokers=4),
        lambda c: c["provider"].pop("type"),
        lambda c: c.update(head_node_type="no_such_node_type"),
    ],
    ids=["string-resource", "typo-key", "no-provider-type", "unknown-head-type"],
)
def test_broken_ray_up_yaml_fails(breakage, ray_up_validate):
    config = _load(RAYCLUSTER / "aws.yaml")
    breakage(config)
    assert ray_up_validate(config)


@pytest.mark.parametrize("path", KUBERAY, ids=lambda p: p.name)
def test_kuberay_manifest_validates(path, kuberay_validate):
    manifest = _load(path)
    assert kuberay_validate(manifest) == []


def _cluster_spec(manifest):
    spec = manifest["spec"]
    return spec.get("rayClusterSpec") or spec.get("rayClusterConfig") or spec


@pytest.mark.parametrize("path", KUBERAY, ids=lambda p: p.name)
def test_kuberay_cluster_shape(path):
    """Autoscaler v2, a GPU worker group on spot nodes with min/max, and Never-restarting pods (v2 requires it)."""
    cluster = _cluster_spec(_load(path))
    assert cluster["enableInTreeAutoscaling"] is True and cluster["autoscalerOptions"]["version"] == "v2"
    for group in cluster["workerGroupSpecs"]:
        pod = group["template"]["spec"]
        assert pod["restartPolicy"] == "Never"
        assert pod["nodeSelector"]["cloud.google.com/gke-spot"] == "true"
        assert group["minReplicas"] <= group["maxReplicas"]
        assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]


def test_rayjob_retries_resume_from_the_same_storage_path():
    spec = _load(RAYCLUSTER / "kuberay" / "rayjob.yaml")["spec"]
    assert spec["entrypoint"].startswith("python -m jobs.sft --config ")
    assert spec["backoffLimit"] >= 1
    assert "ray.storage_path=gs://" in spec["entrypoint"] and "ray.run_name=" in spec["entrypoint"]


def _break_typo(m):
    m["spec"]["workerGroupSpec"] = m["spec"].pop("workerGroupSpecs")


def _break_type(m):
    m["spec"]["workerGroupSpecs"][0]["maxReplicas"] = "eight"


def _break_required(m):
    del m["spec"]["workerGroupSpecs"][0]["groupName"]


def _break_enum(m):
    m["spec"]["autoscalerOptions"]["upscalingMode"] = "Turbo"


@pytest.mark.parametrize("breakage", [_break_typo, _break_type, _break_required, _break_enum],
                         ids=["typo-key", "wrong-type", "missing-required", "bad-enum"])
def test_broken_kuberay_manifest_fails(breakage, kuberay_validate):
    manifest = copy.deepcopy(_load(RAYCLUSTER / "kuberay" / "raycluster.yaml"))
    breakage(manifest)
    assert kuberay_validate(manifest), "a broken manifest passed validation"


def test_broken_rayservice_and_rayjob_fail(kuberay_validate):
    service = _load(RAYCLUSTER / "kuberay" / "rayservice.yaml")
    del service["spec"]["rayClusterConfig"]  # required by the RayService CRD
    assert kuberay_validate(service)
    job = _load(RAYCLUSTER / "kuberay" / "rayjob.yaml")
    job["spec"]["backoffLimit"] = "three"
    assert kuberay_validate(job)


def test_serve_config_is_valid_and_embedded_verbatim_in_rayservice():
    from ray.serve.schema import ServeDeploySchema

    serve_config = _load(RAYCLUSTER / "serve" / "rayalign_serve.yaml")
    ServeDeploySchema.model_validate(serve_config) if hasattr(ServeDeploySchema, "model_validate") else ServeDeploySchema.parse_obj(serve_config)
    embedded = yaml.safe_load(_load(RAYCLUSTER / "kuberay" / "rayservice.yaml")["spec"]["serveConfigV2"])
    assert embedded == serve_config
    assert serve_config["applications"][0]["import_path"] == "app.serve.app:app_builder"


def test_gpu_serve_manifests_load_the_serve_config_in_bfloat16():
    from app.config.loader import load_config
    from app.config.serve import ServeConfig

    args = _load(RAYCLUSTER / "serve" / "rayalign_serve.yaml")["applications"][0]["args"]
    cfg = load_config(REPO_ROOT / args["config"], ServeConfig, args["overrides"])
    assert cfg.vllm.dtype == "bfloat16"  # the CPU config's float32 would halve GPU throughput
