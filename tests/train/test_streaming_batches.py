"""Streaming SFT input (app/train/batches.py): each rank reads its own rows from Parquet through a seeded shuffle
buffer; a step's rows are a pure function of (seed, epoch, step, rank), so a fresh reader resumes exactly."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.train.batches import ParquetRows, StreamingShard

SCHEMA = pa.schema([(c, pa.list_(pa.int32())) for c in ("input_ids", "labels", "position_ids")])


def row(i: int) -> dict:
    n = 1 + i % 5  # the first token is the row's global index; lengths vary
    return {"input_ids": [i] * n, "labels": [-100] + [i] * (n - 1), "position_ids": list(range(n))}


@pytest.fixture
def split(tmp_path):
    """1,003 rows in two files: row groups of 250, 250, 100 rows, then one of 403."""
    rows = [row(i) for i in range(1003)]
    pq.write_table(pa.Table.from_pylist(rows[:600], schema=SCHEMA), tmp_path / "part-00000.parquet", row_group_size=250)
    pq.write_table(pa.Table.from_pylist(rows[600:], schema=SCHEMA), tmp_path / "part-00001.parquet")
    return tmp_path


def ids(micro_batches) -> list[int]:
    return [int(r["input_ids"][0]) for mb in micro_batches for r in mb]


def test_reads_cross_row_groups_and_files_in_the_order_asked(split):
    src = ParquetRows(str(split), batch_rows=64)
    assert src.total_rows == 1003 and [g[3] for g in src.groups] == [250, 250, 100, 403]
    wanted = [*range(590, 610), 5, 6, 1000, 1001, 1002, 5]
    got = src.read(wanted)
    assert [int(r["input_ids"][0]) for r in got] == wanted
    r = got[0]  # row 590: all three columns, int64, its own length
    assert r["input_ids"].dtype == np.int64 and r["labels"].tolist() == [-100] and r["position_ids"].tolist() == [0]
    assert got[-2]["position_ids"].tolist() == [0, 1, 2]  # row 1002: length 1 + 1002 % 5
    assert ParquetRows(str(split), as_lists=True).read([3])[0]["input_ids"] == [3, 3, 3, 3]


@pytest.mark.parametrize("world", [1, 2, 3])
def test_ranks_read_disjoint_rows_and_an_epoch_repeats_none(split, world):
    src = ParquetRows(str(split), batch_rows=64)
    seen = []
    for rank in range(world):
        shard = StreamingShard(src, rank, world, micro_batch_size=2, grad_accum=3, seed=7, block_rows=37, buffer_blocks=3)
        assert shard.steps_per_epoch == (1003 // world) // 6
        epoch = [i for s in range(shard.steps_per_epoch) for i in ids(shard.step_rows(0, s))]
        lo, hi = rank * 1003 // world, (rank + 1) * 1003 // world
        assert len(set(epoch)) == len(epoch) == shard.steps_per_epoch * 6 and all(lo <= i < hi for i in epoch)
        seen += epoch
    assert len(set(seen)) == len(seen)


def test_a_fresh_reader_resumes_any_step_exactly_and_epochs_differ(split):
    src = ParquetRows(str(split), batch_rows=64)
    shard = StreamingShard(src, 1, 2, micro_batch_size=2, grad_accum=2, seed=3, block_rows=16, buffer_blocks=2)
    run = {(e, s): ids(shard.step_rows(e, s)) for e in range(2) for s in range(shard.steps_per_epoch)}
    for e, s in [(0, 0), (0, 7), (0, 8), (1, 31), (1, shard.steps_per_epoch - 1)]:  # 8 steps = one 32-row buffer
        fresh = StreamingShard(ParquetRows(str(split)), 1, 2, 2, 2, seed=3, block_rows=16, buffer_blocks=2)
        assert ids(fresh.step_rows(e, s)) == run[(e, s)]
        assert [len(mb) for mb in fresh.step_rows(e, s)] == [2, 2]
    assert [run[(0, s)] for s in range(10)] != [run[(1, s)] for s in range(10)]
    other_seed = StreamingShard(src, 1, 2, 2, 2, seed=4, block_rows=16, buffer_blocks=2)
    assert ids(other_seed.step_rows(0, 0)) + ids(other_seed.step_rows(0, 1)) != run[(0, 0)] + run[(0, 1)]


def test_the_shuffle_buffer_mixes_blocks_and_memory_stays_at_two_buffers(split):
    src = ParquetRows(str(split), batch_rows=64)
    shard = StreamingShard(src, 0, 1, micro_batch_size=4, grad_accum=1, seed=0, block_rows=10, buffer_blocks=4)
    first = ids(shard.step_rows(0, 0)) + ids(shard.step_rows(0, 1))
    assert len({i // 10 for i in first}) > 1  # rows of one buffer come from several blocks, interleaved
    for s in range(shard.steps_per_epoch):
        shard.step_rows(0, s)
        assert len(shard.buffer._cache) <= 2 and sum(len(b) for b in shard.buffer._cache.values()) <= 2 * 40


def test_pairs_stream_from_the_files_with_the_same_filter_and_hold_out(tmp_path):
    from app.config.preference import PreferenceDataSpec
    from app.data.artifact import load_artifact
    from app.data.synthetic import write_preference_artifact
    from app.models.loader import load_tokenizer, resolve_model
    from app.train.pairs import PairRows, PairShard, load_pair_splits, n_rows, pair_tokens, select_rows

    write_preference_artifact(tmp_path / "pref", load_tokenizer(str(resolve_model("tiny:llama").path)), 120, 0)
    table = load_artifact(tmp_path / "pref").read_table("train").to_pylist()
    longest = [max(len(r["chosen_input_ids"]), len(r["rejected_input_ids"])) for r in table]
    limit = sorted(longest)[90]  # some pairs are longer and must be dropped
    spec = PreferenceDataSpec(artifact=str(tmp_path / "pref"), eval_fraction=0.25, max_eval_pairs=10, max_length=limit)
    train, held = load_pair_splits(spec, [], seed=5)
    kept = [i for i, n in enumerate(longest) if n <= limit]
    assert isinstance(train, PairRows) and isinstance(held, PairRows) and n_rows(held) == 10
    held_out = select_rows(held, range(10))  # read from the files now and n_rows(train) == len(kept) - round(len(kept) * 0.25)
    assert set(train.index.tolist()) <= set(kept) and list(train.index) == sorted(train.index)
    cols = ["chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels"]
    table = [{c: r[c] for c in cols} for r in table]
    held_ids = [table.index(r) for r in (dict(zip(held_out, v)) for v in zip(*held_out.values()))]
    assert not set(held_ids) & set(train.index.tolist()) and set(held_ids) <= set(kept)
    assert pair_tokens(train) == sum(len(table[i]["chosen_input_ids"]) + len(table[i]["rejected_input_ids"]) for i in train.index)
    shards = [PairShard(train, r, 2, micro_batch_size=2, grad_accum=2, seed=1, block_rows=8, buffer_blocks=2) for r in range(2)]
    got = [mb for s in range(shards[0].steps_per_epoch) for sh in shards for mb in sh.step_rows(0, s)]
    rows = [dict(zip(mb, v)) for mb in got for v in zip(*mb.values())]
    at = [table.index(r) for r in rows]  # ValueError unless each streamed pair equals a row of the split exactly
    assert len(set(at)) == len(rows) == shards[0].steps_per_epoch * 8 and set(at) <= set(train.index.tolist())
    assert got[:4] == [mb for s in range(2) for sh in (PairShard(train, 0, 2, 2, 2, 1, 8, 2), PairShard(train, 1, 2, 2, 2, 1, 8, 2))
                       for mb in sh.step_rows(0, s)][:4]


def test_held_out_pairs_come_from_the_eval_split_when_there_is_one(tmp_path):
    from app.config.preference import PreferenceDataSpec
    from app.data.artifact import load_artifact
    from app.data.synthetic import write_preference_artifact
    from app.models.loader import load_tokenizer, resolve_model
    from app.train.pairs import load_pair_splits, n_rows, select_rows

    write_preference_artifact(tmp_path / "pref", load_tokenizer(str(resolve_model("tiny:llama").path)), 30, 12)
    train, held = load_pair_splits(PreferenceDataSpec(artifact=str(tmp_path / "pref"), max_eval_pairs=9), [], seed=0)
    assert n_rows(train) == 30 and n_rows(held) == 9
    val = load_artifact(tmp_path / "pref").read_table("validation").to_pylist()
    got = select_rows(held, [8, 0])
    assert got["rejected_labels"] == [val[8]["rejected_labels"], val[0]["rejected_labels"]]
