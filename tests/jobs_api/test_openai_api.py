"""The job API driven by the official ``openai`` SDK over real HTTP on 127.0.0.1 (scheduler off: shapes and errors)."""

from __future__ import annotations

import io
import json

import openai
import pytest

from tests.jobs_api.conftest import KEY_A, KEY_B


def chat_jsonl(n: int = 6) -> bytes:
    rows = [{"messages": [{"role": "system", "content": "You add numbers."},
                          {"role": "user", "content": f"What is {i} + {i}?"},
                          {"role": "assistant", "content": f"{2 * i}"}]} for i in range(n)]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def dpo_jsonl(n: int = 6) -> bytes:
    rows = [{"input": {"messages": [{"role": "user", "content": f"Say hello {i}"}]},
             "preferred_output": [{"role": "assistant", "content": f"Hello {i}!"}],
             "non_preferred_output": [{"role": "assistant", "content": "No."}]} for i in range(n)]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


@pytest.fixture
def sdk(api):
    url, _, _, app = api
    a = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY_A, max_retries=0)
    b = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY_B, max_retries=0)
    return a, b, app


def upload(client, data: bytes, name: str = "train.jsonl"):
    return client.files.create(file=(name, io.BytesIO(data)), purpose="fine-tune")


def test_files_create_list_retrieve_delete(sdk):
    a, b, _ = sdk
    f = upload(a, chat_jsonl())
    assert f.object == "file" and f.purpose == "fine-tune" and f.status == "uploaded" and f.bytes == len(chat_jsonl())
    g = upload(a, dpo_jsonl(), "pairs.jsonl")
    assert a.files.retrieve(f.id).filename == "train.jsonl"
    assert f.model_extra["rayalign"]["record_type"] == "sft" and g.model_extra["rayalign"]["record_type"] == "preference"
    first = a.files.list(limit=1)
    assert len(first.data) == 1 and first.has_more
    assert [x.id for x in a.files.list(limit=1)] == [g.id, f.id]  # the SDK follows the cursor
    with pytest.raises(openai.NotFoundError):
        b.files.retrieve(f.id)
    assert a.files.delete(f.id).deleted
    with pytest.raises(openai.NotFoundError):
        a.files.retrieve(f.id)
    with pytest.raises(openai.BadRequestError) as bad:
        a.files.create(file=("x.jsonl", io.BytesIO(chat_jsonl())), purpose="assistants")
    assert bad.value.body["param"] == "purpose"
    with pytest.raises(openai.BadRequestError) as bad:
        a.files.create(file=("x.jsonl", io.BytesIO(chat_jsonl())), purpose="fine-tune",
                       expires_after={"anchor": "created_at", "seconds": 3600})
    assert bad.value.body["param"].startswith("expires_after")


def test_create_supervised_and_dpo_jobs_and_page_events(sdk):
    a, b, app = sdk
    train = upload(a, chat_jsonl())
    job = a.fine_tuning.jobs.create(
        model="tiny-llama", training_file=train.id, suffix="demo", seed=7, metadata={"team": "x"},
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": 2,
                                                                          "learning_rate_multiplier": 0.5}}},
        integrations=[{"type": "wandb", "wandb": {"project": "p"}}])
    assert job.object == "fine_tuning.job" and job.status == "queued" and job.model == "tiny-llama"
    assert job.hyperparameters.n_epochs == 2 and job.seed == 7 and job.metadata == {"team": "x"}
    assert job.model_extra["rayalign"]["state"] == "queued"
    stored = app.state.store.get_job(None, job.id)["request"]
    assert stored["hyperparameters"] == {"epochs": 2, "batch_size": 2, "learning_rate": 0.0005, "seed": 7}
    pairs = upload(a, dpo_jsonl(), "pairs.jsonl")
    dpo = a.fine_tuning.jobs.create(model="tiny-llama", training_file=pairs.id,
                                    method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2}}})
    assert dpo.method.type == "dpo" and app.state.store.get_job(None, dpo.id)["request"]["hyperparameters"]["beta"] == 0.2
    assert [j.id for j in a.fine_tuning.jobs.list(limit=1)] == [dpo.id, job.id]
    assert [j.id for j in a.fine_tuning.jobs.list(metadata={"team": "x"})] == [job.id]
    assert a.fine_tuning.jobs.list(metadata={"team": "y"}).data == []
    assert b.fine_tuning.jobs.list().data == []
    with pytest.raises(openai.NotFoundError):
        b.fine_tuning.jobs.retrieve(job.id)
    for i in range(5):
        app.state.store.add_event(job.id, "message", f"step {i}")
    events = a.fine_tuning.jobs.list_events(job.id, limit=2)
    assert len(events.data) == 2 and events.has_more
    seen = [e.message for e in a.fine_tuning.jobs.list_events(job.id, limit=2)]  # every page, via `after`
    assert seen[:5] == [f"step {i}" for i in range(4, -1, -1)] and seen[-1] == "queued"
    warned = [e for e in a.fine_tuning.jobs.list_events(job.id, limit=100).data if "integrations" in e.message]
    assert len(warned) == 1 and warned[0].level == "warn" and "ignored" in warned[0].message
    cancelled = a.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    with pytest.raises(openai.ConflictError):
        a.fine_tuning.jobs.cancel(job.id)
    assert a.fine_tuning.jobs.checkpoints.list(dpo.id).data == []


@pytest.mark.parametrize("kwargs, param, status", [
    ({"model": "gpt-4o-mini"}, "model", 400),
    ({"model": "ft:tiny-llama:alpha:x:0123456789ab"}, "model", 400),  # a fine-tuned model is not a servable base
    ({"hyperparameters": {"epochs": 3}}, "hyperparameters.epochs", 400),
    ({"method": {"type": "supervised", "supervised": {"hyperparameters": {"warmup": 1}}}},
     "method.supervised.hyperparameters.warmup", 400),
    ({"method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 0}}}},
     "method.supervised.hyperparameters.n_epochs", 400),
    ({"method": {"type": "dpo"}}, "training_file", 400),  # a chat file is not preference pairs
    ({"method": {"type": "unsupervised"}}, "method.type", 400),
    ({"method": {"type": "reinforcement", "reinforcement": {"grader": {"type": "python", "source": "x"}}}},
     "method.reinforcement.grader.type", 400),
    ({"method": {"type": "reinforcement", "reinforcement": {}}}, "method.reinforcement.grader", 400),
    ({"training_file": "file-00000000000000000000"}, "training_file", 404),
    ({"extra_body": {"learning_rate": 1}}, "learning_rate", 400),
])
def test_bad_input_is_openai_error_naming_the_field_and_queues_nothing(sdk, kwargs, param, status):
    a, _, app = sdk
    train = upload(a, chat_jsonl())
    args = {"model": "tiny-llama", "training_file": train.id, **kwargs}
    with pytest.raises(openai.APIStatusError) as err:
        a.fine_tuning.jobs.create(**args)
    assert err.value.status_code == status, err.value.body
    assert set(err.value.body) == {"message", "type", "param", "code"} and err.value.body["type"] == "invalid_request_error"
    assert err.value.body["param"] == param and param.split(".")[-1] in err.value.body["message"], err.value.body
    assert app.state.store.list_jobs() == []


def test_other_tenants_file_and_wrong_purpose_are_refused(sdk):
    a, b, app = sdk
    mine, theirs = upload(a, chat_jsonl()), upload(b, chat_jsonl())
    for key, other in (("training_file", {}), ("validation_file", {"training_file": theirs.id})):
        with pytest.raises(openai.NotFoundError) as err:  # tenant A's file, used by tenant B
            b.fine_tuning.jobs.create(model="tiny-llama", **{"training_file": mine.id, **other, key: mine.id})
        assert err.value.body["param"] == key and err.value.body["message"].startswith(key), err.value.body
        assert err.value.body["type"] == "invalid_request_error" and mine.id in err.value.body["message"]
    app.state.store.update_file(mine.id, purpose="batch")  # the API refuses such uploads; an older row may have one
    with pytest.raises(openai.BadRequestError) as err:
        a.fine_tuning.jobs.create(model="tiny-llama", training_file=mine.id)
    assert err.value.body["param"] == "training_file" and "purpose" in err.value.body["message"]
    assert err.value.body["message"].startswith("training_file")
    assert app.state.store.list_jobs() == []  # nothing queued for either tenant


def test_reinforcement_maps_to_ppo_with_a_reward_source(sdk):
    a, _, app = sdk
    qa = upload(a, b"".join(json.dumps({"question": f"{i}+1?", "answer": f"#### {i + 1}"}).encode() + b"\n"
                           for i in range(8)), "qa.jsonl")
    job = a.fine_tuning.jobs.create(model="tiny-llama", training_file=qa.id, method={
        "type": "reinforcement", "reinforcement": {"grader": {"type": "rule", "rule": "gsm8k"},
                                                   "hyperparameters": {"n_epochs": 1, "batch_size": 2}}})
    req = app.state.store.get_job(None, job.id)["request"]
    assert req["method"] == "ppo" and req["reward_rule"] == "gsm8k" and req["hyperparameters"] == {"batch_size": 2, "max_steps": 4}
    with pytest.raises(openai.BadRequestError) as err:  # a reward model the tenant never registered
        a.fine_tuning.jobs.create(model="tiny-llama", training_file=qa.id, method={
            "type": "reinforcement", "reinforcement": {"grader": {"type": "score_model", "model": "ft-nope"}}})
    assert err.value.body["param"] == "method.reinforcement.grader"
