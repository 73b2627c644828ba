from __future__ import annotations

from typing import Literal

import pytest
from pydantic import Field

from app.config import ConfigError, StrictModel, config_hash, dump_config, load_config, parse_overrides


class Inner(StrictModel):
    lr: float = Field(1e-4, description="learning rate")
    r: int = Field(8, description="rank")


class Job(StrictModel):
    name: str = Field("job", description="name")
    mode: Literal["a", "b"] = Field("a", description="mode")
    inner: Inner = Field(default_factory=Inner, description="inner")


def write(tmp_path, text):
    p = tmp_path / "job.yaml"
    p.write_text(text)
    return p


def test_overrides_parse_nested_and_typed():
    assert parse_overrides(["inner.lr=3e-4", "name=x", "inner.r=16"]) == {"inner": {"lr": 3e-4, "r": 16}, "name": "x"}


def test_load_applies_overrides_over_yaml(tmp_path):
    cfg = load_config(write(tmp_path, "name: base\ninner:\n  lr: 0.1\n"), Job, ["inner.r=4"])
    assert (cfg.name, cfg.inner.lr, cfg.inner.r) == ("base", 0.1, 4)


def test_unknown_key_names_key_and_file(tmp_path):
    p = write(tmp_path, "inner:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p, Job)
    msg = str(exc.value)
    assert "inner.lrr" in msg and str(p) in msg and "\n" not in msg


def test_unknown_override_key_is_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'inner.rank'"):
        load_config(write(tmp_path, ""), Job, ["inner.rank=4"])


def test_wrong_type_and_bad_literal(tmp_path):
    with pytest.raises(ConfigError, match="'inner.r'.*'eight'"):
        load_config(write(tmp_path, "inner: {r: eight}\n"), Job)
    with pytest.raises(ConfigError, match="'mode'"):
        load_config(write(tmp_path, "mode: c\n"), Job)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config(tmp_path / "nope.yaml", Job)
    with pytest.raises(ConfigError, match=r"job.yaml line \d: invalid YAML"):
        load_config(write(tmp_path, "name: a\ninner: [\n"), Job)
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, Job, ["justakey"])


def test_hash_is_stable_and_sensitive(tmp_path):
    a = load_config(write(tmp_path, "name: x\n"), Job)
    b = load_config(None, Job, ["name=x"])
    c = load_config(None, Job, ["name=x", "inner.lr=0.2"])
    assert config_hash(a) == config_hash(b) != config_hash(c)
    assert len(config_hash(a)) == 64


def test_dump_round_trips(tmp_path):
    cfg = load_config(None, Job, ["inner.r=32"])
    out = dump_config(cfg, tmp_path / "resolved.yaml")
    again = load_config(out, Job)
    assert again == cfg and out.read_text().startswith(f"# config_hash: {config_hash(cfg)}")


def test_shared_and_home_placeholders_expand(tmp_path, monkeypatch):
    """A config names the shared assets as ``${RAYALIGN_SHARED}/…``: a clone anywhere reads them from
    ``$RAYALIGN_SHARED`` (before: ingest configs said ``../shared/…``, found only in a clone next to that folder)."""
    from app.config.loader import expand_home

    shared = tmp_path / "assets"
    shared.mkdir()
    monkeypatch.setenv("RAYALIGN_SHARED", str(shared))
    monkeypatch.setenv("RAYALIGN_HOME", str(tmp_path / "home"))
    got = expand_home({"sources": [{"path": "${RAYALIGN_SHARED}/data/x.jsonl"}], "out": "${RAYALIGN_HOME}/d",
                       "keep": "../shared/y"})
    assert got == {"sources": [{"path": f"{shared}/data/x.jsonl"}], "out": f"{tmp_path / 'home'}/d",
                   "keep": "../shared/y"}
