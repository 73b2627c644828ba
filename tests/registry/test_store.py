"""Registry behaviour on a real SQLite file and a real PostgreSQL: lineage, stages, concurrency, tenants, drift."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from app.registry import BaseShaMismatch, GateNotPassed, Registry, RegistryError

PASS = {"passed": True, "decided_by": None, "reason": "all gates passed", "outcomes": []}
REPO = Path(__file__).resolve().parents[2]
FAIL = {"passed": False, "decided_by": "perplexity", "reason": "blocked by 'perplexity': ppl too high", "outcomes": []}


def _passing(reg: Registry, tenant: str, name: str, folder) -> int:
    v = reg.register_adapter(tenant, name, str(folder)).version
    reg.record_eval(tenant, name, v, {"ppl": 3.0}, PASS)
    return v


def test_lineage_round_trip(registry_url, make_adapter, tmp_path):
    ds = tmp_path / "ds"
    (ds / "train").mkdir(parents=True)
    (ds / "manifest.json").write_text(json.dumps({"id": "gsm8k-abc123", "record_type": "sft", "splits": {"train": 90,
                                                                                                        "validation": 10}}))
    reg = Registry(registry_url)
    assert reg.register_dataset("acme", str(ds))["rows"] == 100
    folder = make_adapter("a1", base_sha="b" * 64, dataset_id="gsm8k-abc123", config_hash="d" * 64, r=16)
    view = reg.register_adapter("acme", "math", str(folder))
    reg.close()

    reg = Registry(registry_url)  # a fresh connection reads back exactly what was written
    got = reg.lineage("acme", "math", view.version)
    art = got["artifact"]
    assert (art["base_sha"], art["dataset_id"], art["config_hash"], art["method"]) == ("b" * 64, "gsm8k-abc123",
                                                                                        "d" * 64, "sft")
    assert (art["lora_r"], art["lora_alpha"], art["lora_modules"]) == (16, 32, ["q_proj", "v_proj"])
    assert art["uri"] == str(folder.resolve()) and art["stage"] == "dev" and art["kind"] == "adapter"
    assert got["dataset"]["record_type"] == "sft" and got["dataset"]["rows"] == 100
    assert {"source": "train", "key": "train_loss", "value": 1.25} in got["metrics"]
    reg.record_eval("acme", "math", view.version, {"ppl": 2.5}, PASS)
    assert reg.show("acme", "math", view.version).eval_metrics == {"ppl": 2.5}
    reg.close()


def test_bad_lineage_is_rejected_with_file_and_field(registry_url, make_adapter):
    reg = Registry(registry_url)
    folder = make_adapter("bad")
    lineage = json.loads((folder / "rayalign_lineage.json").read_text())
    del lineage["dataset_id"]
    (folder / "rayalign_lineage.json").write_text(json.dumps(lineage))
    with pytest.raises(RegistryError, match=r"rayalign_lineage.json: field 'dataset_id'"):
        reg.register_adapter("acme", "math", str(folder))
    with pytest.raises(RegistryError, match="invalid tenant"):
        reg.register_adapter("../etc", "math", str(folder))
    assert reg.list("acme") == []
    reg.close()


def test_promote_rollback_archive(registry_url, make_adapter):
    reg = Registry(registry_url)
    v1 = _passing(reg, "acme", "math", make_adapter("v1", base_sha="1" * 64))
    v2 = _passing(reg, "acme", "math", make_adapter("v2", base_sha="2" * 64))
    v3 = reg.register_adapter("acme", "math", str(make_adapter("v3"))).version
    reg.record_eval("acme", "math", v3, {"ppl": 9.0}, FAIL)

    with pytest.raises(GateNotPassed, match="failed: blocked by 'perplexity'"):
        reg.promote("acme", "math", v3, "staging")
    reg.promote("acme", "math", v1, "staging")
    reg.promote("acme", "math", v1, "production")
    reg.promote("acme", "math", v2, "production")
    assert reg.resolve("acme", "math") == (reg.show("acme", "math", v2).uri, "2" * 64)
    assert reg.show("acme", "math", v1).stage == "archived"

    back = reg.rollback("acme", "math")
    assert back.version == v1 and reg.resolve("acme", "math")[1] == "1" * 64
    assert reg.show("acme", "math", v2).stage == "archived"
    with pytest.raises(RegistryError, match="no previous production"):
        reg.rollback("acme", "math")  # v2 left production by rollback: never comes back by rollback
    history = [(h["from"], h["to"], h["reason"]) for h in reg.lineage("acme", "math", v1)["history"]]
    assert history == [("dev", "staging", "promote"), ("staging", "production", "promote"),
                       ("production", "archived", "superseded"), ("archived", "production", "restore")]
    reg.archive("acme", "math", v1)
    with pytest.raises(RegistryError, match="nothing at @production"):
        reg.resolve("acme", "math")
    reg.close()


def test_database_rejects_two_productions(registry_url, make_adapter):
    """The partial unique index, not only the Python code, guarantees one production per (tenant, name)."""
    from sqlalchemy.exc import IntegrityError

    from app.registry.schema import ModelArtifact

    reg = Registry(registry_url)
    v1 = _passing(reg, "acme", "math", make_adapter("v1"))
    v2 = _passing(reg, "acme", "math", make_adapter("v2"))
    reg.promote("acme", "math", v1)
    with pytest.raises(IntegrityError):
        with reg._tx() as s:
            row = s.query(ModelArtifact).filter_by(tenant="acme", name="math", version=v2).one()
            row.stage = "production"
    other = _passing(reg, "other", "math", make_adapter("o1"))
    reg.promote("other", "math", other)  # another tenant's production of the same name is independent
    reg.close()


# A separate interpreter per promoter: it waits for a "go" file so all of them hit the database together, then prints
# one JSON line. (Not multiprocessing: spawn children must unpickle the target by module name, and test modules are
# not importable under --import-mode=importlib.)
_PROMOTER = """
import json, os, sys, time
from app.registry import Registry
url, version, go = sys.argv[1], int(sys.argv[2]), sys.argv[3]
reg = Registry(url, create=False)
while not os.path.exists(go):
    time.sleep(0.01)
try:
    reg.promote("acme", "math", version)
    print(json.dumps(["ok", version]))
except Exception as exc:
    print(json.dumps(["error", repr(exc)]))
finally:
    reg.close()
"""


def test_concurrent_promotions_leave_exactly_one_production(registry_url, make_adapter, tmp_path):
    reg = Registry(registry_url)
    versions = [_passing(reg, "acme", "math", make_adapter(f"v{i}")) for i in range(6)]

    # threads, each with its own session, all released at once
    barrier, errors = threading.Barrier(len(versions)), []

    def worker(v):
        barrier.wait()
        try:
            reg.promote("acme", "math", v)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(v,)) for v in versions]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors, errors
    prod = reg.list("acme", "math", stage="production")
    assert len(prod) == 1
    assert len(reg.list("acme", "math", stage="archived")) == len(versions) - 1

    # separate processes (separate connections and interpreters)
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _PROMOTER, registry_url, str(v), str(go)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=REPO) for v in versions[:4]]
    time.sleep(1.0)
    go.touch()
    outcomes = []
    for p in procs:
        out, err = p.communicate(timeout=600)  # generous: each interpreter imports SQLAlchemy on a 2-core box
        assert p.returncode == 0, err[-2000:]
        outcomes.append(tuple(json.loads(out.strip().splitlines()[-1])))
    assert all(kind == "ok" for kind, _ in outcomes), outcomes
    prod = reg.list("acme", "math", stage="production")
    assert len(prod) == 1 and prod[0].version in versions[:4]
    reg.close()


def test_tenant_isolation(registry_url, make_adapter):
    reg = Registry(registry_url)
    a = _passing(reg, "acme", "math", make_adapter("a"))
    b = _passing(reg, "globex", "math", make_adapter("b", base_sha="f" * 64))
    reg.promote("acme", "math", a)
    assert [v.tenant for v in reg.list("acme")] == ["acme"]
    assert [v.tenant for v in reg.list("globex")] == ["globex"]
    with pytest.raises(RegistryError, match="nothing at @production"):
        reg.resolve("globex", "math")  # acme's production is invisible to globex
    with pytest.raises(RegistryError, match="no artifact globex/math@v2"):
        reg.promote("globex", "math", 2)
    with pytest.raises(RegistryError):
        reg.show("globex", "secret", a)
    reg.promote("globex", "math", b)
    assert reg.resolve("globex", "math")[1] == "f" * 64 and reg.resolve("acme", "math")[1] == "a" * 64
    reg.close()


def test_base_drift_guard(registry_url, make_adapter):
    reg = Registry(registry_url)
    src = "bundled:smollm2-135m-instruct"
    assert reg.register_base("acme", src, "a" * 64) == []
    v1 = _passing(reg, "acme", "math", make_adapter("v1", base_sha="a" * 64))
    reg.promote("acme", "math", v1)
    stale = reg.register_base("acme", src, "e" * 64)  # the base weights changed
    assert [(s.name, s.version) for s in stale] == [("math", v1)]
    assert reg.show("acme", "math", v1).needs_reeval
    with pytest.raises(BaseShaMismatch, match="refusing to serve"):
        reg.resolve("acme", "math", expected_base_sha="e" * 64)
    assert reg.resolve("acme", "math", expected_base_sha="a" * 64)[1] == "a" * 64
    v2 = _passing(reg, "acme", "math", make_adapter("v2", base_sha="a" * 64))
    reg.record_eval("acme", "math", v2, {}, PASS)
    v3 = reg.register_adapter("acme", "math", str(make_adapter("v3", base_sha="a" * 64))).version
    assert reg.show("acme", "math", v3).needs_reeval  # registered on an outdated base: flagged at once
    reg.record_eval("acme", "math", v3, {}, PASS)
    assert not reg.show("acme", "math", v3).needs_reeval  # a fresh eval clears it
    reg.close()
