"""The Grafana dashboard queries exactly the metrics rayalign emits, through a selectable Prometheus data source."""

from __future__ import annotations

import json
import re

from app.config.paths import REPO_ROOT

DASHBOARD = REPO_ROOT / "raycluster" / "grafana" / "rayalign_dashboard.json"


def _panels():
    return [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"]


def _balanced(expr: str) -> bool:
    depth = {"(": 0, "{": 0, "[": 0}
    closing = {")": "(", "}": "{", "]": "["}
    for ch in expr:
        if ch in depth:
            depth[ch] += 1
        elif ch in closing:
            depth[closing[ch]] -= 1
            if depth[closing[ch]] < 0:
                return False
    return not any(depth.values())


def test_dashboard_panels_are_wellformed():
    doc = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    assert {v["name"] for v in doc["templating"]["list"]} >= {"datasource", "run"}
    for panel in _panels():
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert _balanced(target["expr"]), target["expr"]


def test_training_queries_match_the_gauges_the_train_loop_sets():
    from app.train.reporting import RAY_GAUGES

    emitted = {f"ray_rayalign_train_{k}" for k in RAY_GAUGES}  # Ray prefixes custom metrics with ray_
    queried = {m for p in _panels() for t in p["targets"] for m in re.findall(r"ray_rayalign_train_\w+", t["expr"])}
    assert queried <= emitted, f"dashboard queries metrics nobody emits: {sorted(queried - emitted)}"
    assert {"ray_rayalign_train_tokens_per_s", "ray_rayalign_train_loss", "ray_rayalign_train_step"} <= queried
