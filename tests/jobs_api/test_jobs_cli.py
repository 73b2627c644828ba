"""`rayalign jobs …` is a thin client of the API: submit (with upload), status, list, cancel, over real HTTP."""

from __future__ import annotations

import json

import argparse

from app.commands import jobs
from tests.jobs_api.conftest import KEY_A, gsm8k_lines


def run_cli(capsys, *argv) -> tuple[int, object]:
    """`rayalign jobs …` through the verb's own parser (app.cli would import every verb: slow and beside the point)."""
    assert argv[0] == "jobs"
    parser = argparse.ArgumentParser(prog="rayalign jobs")
    jobs.add_arguments(parser)
    rc = jobs.run(parser.parse_args(list(argv[1:])))
    out = capsys.readouterr().out
    return rc, json.loads(out)


def test_cli_submit_status_list_cancel(api, tmp_path, monkeypatch, capsys):
    url = api[0]
    monkeypatch.setenv("RAYALIGN_API_KEY", KEY_A)
    data = tmp_path / "train.jsonl"
    data.write_bytes(gsm8k_lines(6))
    rc, job = run_cli(capsys, "jobs", "--url", url, "submit", "--file", str(data), "--base-model", "tiny:llama",
                      "--idempotency-key", "cli-1", "max_steps=5", "learning_rate=1e-4")
    assert rc == 0 and job["status"] == "queued" and job["rayalign"]["knobs"]["max_steps"] == 5
    rc, again = run_cli(capsys, "jobs", "--url", url, "submit", "--training-file", job["training_file"],
                        "--base-model", "tiny:llama", "--idempotency-key", "cli-1")
    assert again["id"] == job["id"]
    rc, upload = run_cli(capsys, "jobs", "--url", url, "file", job["training_file"])
    assert rc == 0 and upload["rayalign"]["rows"] == 6 and upload["status"] == "uploaded"  # no scheduler here: not ingested
    rc, status = run_cli(capsys, "jobs", "--url", url, "status", job["id"])
    assert rc == 0 and status["id"] == job["id"]
    rc, listing = run_cli(capsys, "jobs", "--url", url, "list")
    assert [j["id"] for j in listing["data"]] == [job["id"]]
    rc, cancelled = run_cli(capsys, "jobs", "--url", url, "cancel", job["id"])
    assert rc == 0 and cancelled["status"] == "cancelled"
    rc, bad = run_cli(capsys, "jobs", "--url", url, "submit", "--training-file", job["training_file"],
                      "--base-model", "tiny:llama", "epochs=3")
    assert rc == 1 and bad["error"]["param"] == "hyperparameters.epochs"
