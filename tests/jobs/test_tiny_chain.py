"""The smoke twins chain, each step fed by the previous one's output, through the same commands a user types:

    rayalign ingest --config configs/tiny/ingest_sft.yaml
    rayalign train  --config configs/tiny/sft_lora.yaml           # reads ${RAYALIGN_HOME}/datasets/tiny-sft
    rayalign eval   --config configs/tiny/eval_gates.yaml registry.name=tiny-sft   # ${RAYALIGN_HOME}/outputs/tiny-sft
    rayalign registry promote tiny-sft 1 --publish
    rayalign serve  --config configs/tiny/serve_hf.yaml            # then one chat request to tiny-sft

Opt-in (`-m e2e`, about 3 minutes on 2 cores); needs the shared GSM8K files the tiny eval reads.
"""

from __future__ import annotations

import os
import re

import pytest

from app.cli import main
from app.config.paths import REPO_ROOT, shared_dir

pytestmark = [pytest.mark.e2e, pytest.mark.ray,
              pytest.mark.skipif(shared_dir() is None, reason="the tiny eval reads GSM8K from ../shared")]


def test_ingest_train_eval_serve_chain(capfd, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    assert main(["ingest", "--config", "configs/tiny/ingest_sft.yaml"]) == 0
    assert main(["train", "--config", "configs/tiny/sft_lora.yaml", "train.max_steps=3"]) == 0
    adapter = os.path.join(os.environ["RAYALIGN_HOME"], "outputs", "tiny-sft")  # where the tiny eval reads it
    assert os.path.isfile(os.path.join(adapter, "rayalign_lineage.json"))
    out = capfd.readouterr().out  # the quiet console still shows the verb's result lines
    assert re.search(r"^output: (\S+)$", out, re.M).group(1) == adapter
    assert main(["eval", "--config", "configs/tiny/eval_gates.yaml", "registry.name=tiny-sft", "judge.kind=none"]) == 0
    assert main(["registry", "promote", "tiny-sft", "1", "--publish"]) == 0

    from openai import OpenAI

    from app.config.loader import load_config
    from app.config.serve import ServeConfig
    from app.serve.app import run_app
    from app.serve.auth import hash_key

    # the key's digest, not an env var: Serve replicas run in Ray workers that started before this line
    tenants = f"tenants=[{{name: default, api_key_sha256: ['{hash_key('sk-chain')}']}}]"
    url = run_app(load_config(REPO_ROOT / "configs/tiny/serve_hf.yaml", ServeConfig, [tenants]))
    try:
        client = OpenAI(base_url=url, api_key="sk-chain", timeout=300, max_retries=1)
        assert "tiny-sft" in [m.id for m in client.models.list().data]
        reply = client.chat.completions.create(model="tiny-sft", max_tokens=4,
                                               messages=[{"role": "user", "content": "hi"}])
        assert reply.usage.completion_tokens >= 1
    finally:
        from ray import serve

        serve.shutdown()
