"""Registry-driven serving without Ray: production / rollback / canary routing and ft: aliases, as Serve resolves them."""

from __future__ import annotations

import json

import pytest

from app.registry import rollout
from app.registry.errors import RegistryError
from app.registry.store import Registry
from app.serve.resolver_registry import ChainResolver, RegistryResolver


def adapter(folder, seed: int):
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": 4, "peft_type": "LORA"}))
    (folder / "adapter_model.safetensors").write_bytes(bytes([seed]) * 8)
    (folder / "rayalign_lineage.json").write_text(json.dumps({
        "base_model_source": "tiny:llama", "base_sha": "ab" * 32, "dataset_id": "ds", "config_hash": f"c{seed}",
        "method": "lora", "metrics": {}}))
    return str(folder)


@pytest.fixture
def reg(tmp_path):
    r = Registry(f"sqlite:///{tmp_path / 'reg.db'}")
    for v in (1, 2, 3):
        view = r.register_adapter("acme", "math", adapter(tmp_path / f"v{v}", v))
        r.record_eval("acme", "math", view.version, {"s": 1.0}, {"passed": True})
    return r


def served(resolver, n=1, tenant="acme", name="math"):
    return [resolver.resolve(tenant, name).version.split("-")[0] for _ in range(n)]


def test_deploy_and_rollback_change_the_next_resolution(reg):
    res = RegistryResolver(reg.url)
    assert res.resolve("acme", "math") is None  # nothing in production yet
    rollout.deploy(reg, "acme", "math", 1)
    assert served(res) == ["v1"]
    rollout.deploy(reg, "acme", "math", 2)
    assert served(res) == ["v2"]
    reg.rollback("acme", "math")
    assert served(res) == ["v1"]
    assert res.resolve("other", "math") is None and res.list_names("acme") == ["math"]


def test_canary_share_is_exact_and_its_rollback_applies_to_the_next_request(reg):
    res = RegistryResolver(reg.url)
    rollout.deploy(reg, "acme", "math", 1)
    rollout.deploy(reg, "acme", "math", 3, share=0.1)
    got = served(res, 1000)
    assert got.count("v3") == 100 and got.count("v1") == 900
    assert max(len(list(g)) for k, g in __import__("itertools").groupby(got) if k == "v3") == 1  # spread, not bursts
    assert rollout.rollback_canary(reg, "acme", "math")
    assert served(res, 20) == ["v1"] * 20
    rollout.deploy(reg, "acme", "math", 3, share=0.5)
    assert rollout.promote_canary(reg, "acme", "math").version == 3
    assert served(res, 5) == ["v3"] * 5 and rollout.canary(reg, "acme", "math") is None
    with pytest.raises(RegistryError, match="already production"):
        rollout.deploy(reg, "acme", "math", 3, share=0.2)


def test_fine_tuned_alias_pins_a_version_for_its_tenant_only(reg, tmp_path):
    model = rollout.fine_tuned_model_id("tiny-llama", "acme", "Demo", "ftjob-0123456789abcdef0123")
    assert model == "ft:tiny-llama:acme:demo:0123456789ab"
    assert rollout.parse_fine_tuned_model(model) == ("tiny-llama", "acme", "demo", "0123456789ab")
    rollout.set_alias(reg, "acme", model, "math", 2)
    rollout.set_alias(reg, "acme", model, "math", 3)  # an alias never moves
    res = ChainResolver(RegistryResolver(reg.url))
    assert served(res, name=model) == ["v2"]
    assert res.resolve("globex", model) is None
    assert model in res.list_names("acme")


def test_serve_model_names_pass_ft_ids_to_the_resolver():
    from app.serve.errors import BadRequest, NotFound
    from app.serve.names import parse_model

    ref = parse_model("ft:tiny-llama:acme:demo:0123456789ab", "tiny-llama")
    assert ref.base == "tiny-llama" and ref.adapter == "ft:tiny-llama:acme:demo:0123456789ab"
    assert parse_model("ft:tiny-llama:acme::0123456789ab", "tiny-llama").adapter.endswith("::0123456789ab")
    with pytest.raises(NotFound):
        parse_model("ft:smollm2-135m-instruct:acme:demo:0123456789ab", "tiny-llama")
    for bad in ("ft:tiny-llama:acme:demo", "ft:tiny-llama:../x:demo:1", "ft:tiny-llama:acme:demo:1\n"):
        with pytest.raises(BadRequest):
            parse_model(bad, "tiny-llama")
