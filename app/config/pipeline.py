"""Schemas for the end-to-end pipeline (`rayalign pipeline`) and the fine-tuning job API (`rayalign jobs api`).

A pipeline does not repeat other jobs' knobs: each stage points at that job's own YAML under ``configs/`` plus
dotted overrides, and the pipeline passes its ``model.source`` down to every stage so one line switches the model.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.config.base import StrictModel
from app.config.common import ModelSpec, RaySpec, TrackingSpec
from app.config.serve import TenantSpec


class StageSpec(StrictModel):
    """One stage: the job YAML it runs and overrides applied on top of it."""

    enabled: bool = Field(True, description="run this stage (a disabled stage is skipped and reported as such)")
    config: str = Field("", description="path of the stage's job YAML, relative to the repository root")
    overrides: list[str] = Field(default_factory=list, description="dotted key=value overrides for the stage's config")


class PreferenceStage(StageSpec):
    """The optional alignment stage after SFT."""

    enabled: bool = Field(False, description="run a preference/RL stage after SFT")
    method: Literal["dpo", "ppo", "reward"] = Field("dpo", description="'dpo' (offline pairs), 'ppo' (online RL) or 'reward' (reward model)")
    ingest: StageSpec = Field(
        default_factory=lambda: StageSpec(enabled=False),
        description="ingest run that builds the preference/prompt dataset this stage trains on",
    )


class RewardStage(StageSpec):
    """RLHF: a reward model trained after SFT, before the preference stage (whose ppo run then scores with it)."""

    enabled: bool = Field(False, description="train a reward model after SFT (its folder feeds preference.method=ppo)")
    ingest: StageSpec = Field(
        default_factory=lambda: StageSpec(enabled=False),
        description="ingest run that builds the preference pairs the reward model trains on",
    )


class PromoteSpec(StrictModel):
    """How the gated adapter is registered and promoted."""

    tenant: str = Field("default", pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="tenant that owns the adapter")
    name: str = Field("smollm2-gsm8k", pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$", description="registry name of the adapter")
    alias: str = Field("production", description="alias the adapter is promoted to when every gate passes")


class ServeStage(StageSpec):
    """Serve the promoted adapter and send one request through the OpenAI-compatible API."""

    sample_prompt: str = Field(
        "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
        "How many clips did Natalia sell altogether in April and May?",
        description="the one chat request sent to the served adapter",
    )
    max_tokens: int = Field(64, ge=1, le=1024, description="max new tokens for the sample request")
    keep_running: bool = Field(False, description="leave the Serve app up after the sample request (else shut down)")


class JobLink(StrictModel):
    """Set when the pipeline runs on behalf of a job-API job: where it reports progress."""

    job_id: str | None = Field(None, description="job-API job id this run reports to (None: a standalone run)")
    db_url: str | None = Field(None, description="SQLAlchemy URL of the job store (None: the default registry DB)")


class PipelineConfig(StrictModel):
    """ingest -> SFT LoRA -> optional DPO/PPO -> eval gates -> register -> promote -> Serve -> sample request."""

    name: str = Field("demo", description="pipeline run name (names the report folder and the registry entry's run)")
    model: ModelSpec = Field(default_factory=ModelSpec, description="base model, passed to every stage")
    ray: RaySpec = Field(default_factory=RaySpec, description="where Ray runs and stores checkpoints")
    tracking: TrackingSpec = Field(default_factory=TrackingSpec, description="MLflow tracking")
    ingest: StageSpec = Field(default_factory=StageSpec, description="raw data -> dataset artifact")
    dataset: str | None = Field(
        None, description="an already-ingested dataset artifact folder to train on instead of running ingest "
                          "(the job API passes a processed upload's artifact when its model matches the job's)"
    )
    sft: StageSpec = Field(default_factory=StageSpec, description="SFT LoRA on the ingested artifact")
    reward: RewardStage = Field(default_factory=RewardStage, description="optional reward model after SFT (RLHF)")
    preference: PreferenceStage = Field(default_factory=PreferenceStage, description="optional DPO or PPO stage")
    eval: StageSpec = Field(default_factory=StageSpec, description="eval suite + gates deciding promotion")
    promote: PromoteSpec = Field(default_factory=PromoteSpec, description="registry name and promotion alias")
    serve: ServeStage = Field(default_factory=ServeStage, description="serve the promoted adapter, one sample request")
    report_dir: str | None = Field(None, description="where the run report goes (None: <home>/pipelines/<name>-<time>)")
    job: JobLink = Field(default_factory=JobLink, description="job-API link (set by the job API, not by hand)")


class QuotaSpec(StrictModel):
    """One tenant's limits in the job API (None: unlimited). Over a limit: 429 with Retry-After, nothing stored."""

    max_running_jobs: int | None = Field(None, ge=1, description="jobs of the tenant running at once (the rest wait)")
    max_queued_jobs: int | None = Field(None, ge=0, description="jobs the tenant may have waiting; one more is a 429")
    max_stored_mb: float | None = Field(None, gt=0, description="bytes of uploads the tenant may keep; over it: 429")


class JobsAPIConfig(StrictModel):
    """The fine-tuning job API: where it listens, what it stores, how it runs jobs."""

    host: str = Field("127.0.0.1", description="HTTP bind address of the Serve proxy")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port of the Serve proxy")
    route_prefix: str = Field("/", pattern=r"^/[A-Za-z0-9/_-]*$", description="route prefix of the API app in Serve")
    db_url: str | None = Field(None, description="SQLAlchemy URL of the job store (None: sqlite:///<home>/registry.db)")
    files_dir: str | None = Field(None, description="where uploads are streamed to (None: <home>/files)")
    max_upload_mb: float = Field(64.0, gt=0, description="largest accepted upload; bigger ones get 413 and leave no file")
    max_body_kb: int = Field(64, ge=1, description="largest accepted JSON request body")
    dashboard_address: str = Field("http://127.0.0.1:8265", description="Ray dashboard URL for JobSubmissionClient")
    poll_interval_s: float = Field(2.0, gt=0, description="how often the scheduler polls Ray job status")
    max_attempts: int = Field(3, ge=1, description="a preempted job is re-queued until it has run this many times")
    job_num_cpus: float = Field(0.0, ge=0, description="CPUs reserved for each job's driver (its Train workers ask their own)")
    max_concurrent_jobs: int = Field(1, ge=1, description="jobs running at once; the rest wait queued")
    max_concurrent_ingests: int = Field(2, ge=1, description="upload-ingestion Ray jobs running at once (the rest wait)")
    ingest_num_cpus: float = Field(0.5, gt=0, description="CPUs each ingestion job reserves (bounds torch processes)")
    aging_s: float = Field(300.0, gt=0, description="priority aging: a waiting job gains one class per aging_s seconds")
    quotas: dict[str, QuotaSpec] = Field(default_factory=dict, description="per-tenant limits (tenant name -> quota)")
    default_quota: QuotaSpec = Field(default_factory=QuotaSpec, description="limits of tenants without an entry")
    retry_after_s: int = Field(30, ge=1, description="Retry-After seconds sent with a quota 429")
    usd_per_cpu_hour: float = Field(0.0446, ge=0, description="price of a reserved CPU-hour in usage cost estimates "
                                    "(default: AWS c7i on-demand, per vCPU)")
    gpu_type: str | None = Field(None, description="GPU type priced for jobs' GPU-seconds (app.plan.gpus.CATALOG name)")
    pipeline_template: str = Field(
        "configs/tiny/pipeline_job.yaml", description="pipeline YAML each API job starts from (method picks stages)"
    )
    upload_ingest: str = Field(
        "configs/tiny/ingest_sft.yaml",
        description="ingest YAML every upload is run through (as a Ray job; its model tokenizes; record type guessed)",
    )
    tenants: list[TenantSpec] = Field(
        default_factory=list, description="API keys and tenants, as in the serving app (empty: every call is 401)"
    )
