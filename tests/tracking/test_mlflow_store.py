from __future__ import annotations

from app.config.common import TrackingSpec
from app.tracking.mlflow_store import configure_mlflow, default_tracking_uri, tracking_uri


def test_default_store_is_sqlite_under_home_and_round_trips(rayalign_home):
    assert tracking_uri() == default_tracking_uri() == f"sqlite:///{rayalign_home / 'mlflow.db'}"
    mlflow = configure_mlflow(TrackingSpec(experiment="unit"))
    with mlflow.start_run(run_name="r") as run:
        mlflow.log_param("lr", 0.1)
        mlflow.log_metric("loss", 1.5, step=3)
    got = mlflow.get_run(run.info.run_id)
    assert got.data.params["lr"] == "0.1" and got.data.metrics["loss"] == 1.5
    assert (rayalign_home / "mlflow.db").is_file()
    assert str(rayalign_home / "mlartifacts") in mlflow.get_experiment_by_name("unit").artifact_location
