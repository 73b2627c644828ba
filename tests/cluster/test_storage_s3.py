"""Run storage on an S3-compatible store: reachable stores pass the start-up probe, unreachable ones fail the job at
start with one line naming the URI; a tiny SFT run checkpoints into the bucket and a re-run resumes from it."""

from __future__ import annotations

import pytest

from app.config.errors import ConfigError
from app.config.paths import REPO_ROOT
from tests.cluster.conftest import free_port, s3_keys


def test_probe_passes_on_a_reachable_bucket_and_leaves_nothing(moto_s3):
    from app.launch.storage import check_storage_reachable

    check_storage_reachable(f"s3://{moto_s3['bucket']}/probe-test")
    assert not [k for k in s3_keys(moto_s3, "probe-test") if ".rayalign-probe" in k]


def test_missing_bucket_is_named(moto_s3):
    from app.launch.storage import check_storage_reachable

    with pytest.raises(ConfigError, match=r"ray.storage_path s3://no-such-bucket/runs cannot be reached.*bucket does not exist"):
        check_storage_reachable("s3://no-such-bucket/runs")


def test_unreachable_storage_fails_the_job_at_start(monkeypatch, capsys, tmp_path, tiny_model_dir):
    """jobs.sft exits 2 with one stderr line naming the URI, before Ray or any training starts."""
    import ray

    from jobs.sft import main
    from app.data.synthetic import write_packed_artifact

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    artifact = write_packed_artifact(tmp_path / "artifact")
    was_running = ray.is_initialized()
    rc = main(["--config", str(REPO_ROOT / "configs/tiny/sft_lora.yaml"), f"data.artifact={artifact}",
               "ray.storage_path=s3://rayalign-ckpt/runs", "ray.run_name=unreachable"])
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line.lower()]
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("jobs.sft: error: ray.storage_path s3://rayalign-ckpt/runs cannot be reached")
    assert ray.is_initialized() == was_running  # failed before starting a cluster


@pytest.mark.ray
@pytest.mark.e2e
def test_sft_checkpoints_in_s3_and_a_rerun_resumes_from_them(moto_s3, sft_artifact):
    """Preempted at step 5 (SIGTERM drill) with storage on S3: the checkpoint is in the bucket; the same command
    resumes from it and finishes with no step lost or repeated."""
    import ray

    from app.config.loader import load_config
    from app.config.sft import SFTConfig
    from app.launch.run import run_sft

    ray.shutdown()  # the workers must start after the AWS variables are set (they inherit them)
    storage = f"s3://{moto_s3['bucket']}/runs"

    def cfg(*extra):
        return load_config(REPO_ROOT / "configs/tiny/sft_lora.yaml", SFTConfig,
                           [f"data.artifact={sft_artifact}", f"ray.storage_path={storage}",
                            "ray.run_name=s3-resume", "output.dir=null", *extra])  # output next to the checkpoints

    try:
        first = run_sft(cfg("fault.sigterm_at_step=5", "fault.rank=1"))
        assert first.status == "preempted" and first.step == 5
        manifests = [k for k in s3_keys(moto_s3, "runs/s3-resume/") if k.endswith("rayalign_checkpoint.json")]
        assert manifests, "no checkpoint manifest landed in the bucket"
        second = run_sft(cfg())
        assert second.status == "completed" and second.step == 10 and second.resumed_from == [first.step]
        assert second.checkpoint_path and second.checkpoint_path.startswith(f"{moto_s3['bucket']}/runs/s3-resume/")
        assert len(first.history) + len(second.history) - second.resumed_from[0] == 10  # no step lost or repeated
        # the finished adapter lands next to the checkpoints in the bucket, and a local copy under RAYALIGN_HOME
        uploaded = {k.rsplit("/", 1)[1] for k in s3_keys(moto_s3, "runs/s3-resume/adapter/")}
        assert {"adapter_model.safetensors", "rayalign_lineage.json", "loss_curve.png"} <= uploaded
        assert second.output_dir.is_dir() and "s3:" not in str(second.output_dir)
    finally:
        ray.shutdown()


def test_upload_folder_puts_every_file_under_the_uri(moto_s3, tmp_path):
    """A finished run's output folder on object-store storage goes to the bucket (nested files included)."""
    from app.launch.storage import upload_folder

    (tmp_path / "out" / "sub").mkdir(parents=True)
    (tmp_path / "out" / "a.json").write_text("{}")
    (tmp_path / "out" / "sub" / "b.bin").write_bytes(b"x" * 10)
    upload_folder(tmp_path / "out", f"s3://{moto_s3['bucket']}/runs/r1/adapter")
    files = sorted(k for k in s3_keys(moto_s3, "runs/r1/adapter/") if not k.endswith("/"))  # '/' keys: pyarrow's dir markers
    assert files == ["runs/r1/adapter/a.json", "runs/r1/adapter/sub/b.bin"]
