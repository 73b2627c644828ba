"""Model-name grammar, name validation (no traversal) and API-key auth: pure, fast."""

from __future__ import annotations

import pytest

from app.config.serve import TenantSpec
from app.serve.auth import KeyRing, hash_key
from app.serve.errors import BadRequest, NotFound, Unauthorized
from app.serve.names import ModelRef, parse_model, served_name_for, validate_name


def test_parse_model_forms():
    assert parse_model("smol", "smol") == ModelRef("smol", None)
    assert parse_model("alpha", "smol") == ModelRef("smol", "alpha")
    assert parse_model("smol:alpha", "smol") == ModelRef("smol", "alpha")
    with pytest.raises(NotFound):
        parse_model("other:alpha", "smol")


@pytest.mark.parametrize("bad", ["../x", "a/b", "..", "a..b", "", "A", "x" * 65, "a b", "a\x00", "/etc", "~root", ".hidden"])
def test_unsafe_names_are_400(bad):
    with pytest.raises(BadRequest):
        validate_name(bad)


def test_bad_adapter_part_is_400():
    with pytest.raises(BadRequest):
        parse_model("smol:../../etc", "smol")


def test_served_name_derivation():
    assert served_name_for("bundled:smollm2-135m-instruct") == "smollm2-135m-instruct"
    assert served_name_for("tiny:llama") == "tiny-llama"
    assert served_name_for("/models/My Model/") == "my-model"
    assert served_name_for("x", "custom") == "custom"


def test_keyring_maps_keys_to_tenants(monkeypatch):
    monkeypatch.setenv("DEV_KEY", "sk-dev")
    ring = KeyRing.from_specs([
        TenantSpec(name="acme", api_key_sha256=[hash_key("sk-a1"), hash_key("sk-a2")]),
        TenantSpec(name="dev", api_key_env="DEV_KEY"),
    ])
    assert ring.authenticate("Bearer sk-a1") == ring.authenticate("bearer sk-a2") == "acme"
    assert ring.authenticate("Bearer sk-dev") == "dev"
    for header in (None, "", "Bearer ", "Basic sk-a1", "sk-a1", "Bearer sk-a3"):
        with pytest.raises(Unauthorized):
            ring.authenticate(header)


def test_one_key_for_two_tenants_is_a_config_error():
    with pytest.raises(ValueError, match="two tenants"):
        KeyRing.from_specs([TenantSpec(name="a", api_key_sha256=[hash_key("k")]), TenantSpec(name="b", api_key_sha256=[hash_key("k")])])


def test_errors_render_openai_shape_and_survive_pickling():
    import pickle

    err = pickle.loads(pickle.dumps(NotFound("no such model", param="model")))
    assert err.status == 404 and err.body() == {
        "error": {"message": "no such model", "type": "invalid_request_error", "param": "model", "code": "model_not_found"}
    }
