"""The pipeline reports through the sink it is given: stage starts/ends in order, fanned out to every listener."""

from __future__ import annotations

from app.config.pipeline import JobLink, PipelineConfig
from app.jobs_api.progress import JobProgress, job_progress
from app.pipeline import run as run_mod
from app.pipeline.progress import FanOut, ProgressSink
from app.pipeline.results import DatasetRef
from app.pipeline.run import Stage, run_pipeline


class Recorder(ProgressSink):
    def __init__(self):
        self.calls = []

    def stage_started(self, name):
        self.calls.append(("start", name))

    def stage_finished(self, name, status, seconds, detail=""):
        self.calls.append(("end", name, status))


def test_stages_are_reported_to_every_sink(tmp_path, monkeypatch):
    def ok(ctx, got):
        return DatasetRef(id="d", path=tmp_path, record_type="sft")

    def broken(ctx, got):
        raise RuntimeError("boom")

    monkeypatch.setattr(run_mod, "plan", lambda cfg: [
        Stage("ingest", True, ok, ("dataset",)), Stage("sft", False, ok, ("dataset",)),
        Stage("register", True, broken, ("version",)), Stage("serve", True, ok, ("dataset",))])
    a, b = Recorder(), Recorder()
    try:
        run_pipeline(PipelineConfig(name="t"), report_dir=tmp_path, progress=FanOut(a, None, b))
    except RuntimeError:
        pass
    expected = [("start", "ingest"), ("end", "ingest", "ok"), ("start", "register"), ("end", "register", "failed")]
    assert a.calls == expected and b.calls == expected


def test_job_sink_only_for_a_job(tmp_path):
    assert job_progress(JobLink()) is None
    sink = job_progress(JobLink(job_id="ftjob-1", db_url=f"sqlite:///{tmp_path / 'jobs.db'}"))
    assert isinstance(sink, JobProgress) and sink.follows_checkpoints
    assert not FanOut(ProgressSink()).follows_checkpoints and FanOut(sink).follows_checkpoints
