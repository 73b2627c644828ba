"""Bad input is refused or streamed with bounded memory, with a one-line reason (readers only: no Ray needed)."""

from __future__ import annotations

import gzip
import json
import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.data.readers import InputRefused, ReadLimits, iter_stream_rows

LIMITS = ReadLimits(max_line_bytes=1 << 20, max_expansion=64.0, max_row_group_bytes=64 << 20)


def _rows(path, reader="jsonl", limits=LIMITS):
    tracemalloc.start()
    try:
        with open(path, "rb") as fh:
            rows = list(iter_stream_rows(fh, reader, limits, path.stat().st_size))
        return rows, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_single_huge_line_is_skipped_unread(tmp_path):
    f = tmp_path / "one_line.jsonl"
    with open(f, "wb") as fh:  # 64 MiB on one line (the 2 GB case at a size a test can afford), then a good row
        fh.write(b'{"question": "')
        for _ in range(64):
            fh.write(b"x" * (1 << 20))
        fh.write(b'", "answer": "1"}\n' + json.dumps({"question": "q?", "answer": "#### 1"}).encode() + b"\n")
    rows, peak = _rows(f)
    assert [n for n, _ in rows] == [1, 2] and rows[0][1] is None and rows[1][1].startswith(b'{"question": "q?"')
    assert peak < 8 << 20  # never held: peak memory is a few chunks, not the 64 MiB line


def test_gzip_bomb_is_refused_with_bounded_memory(tmp_path):
    f = tmp_path / "bomb.jsonl.gz"
    with gzip.open(f, "wb", compresslevel=1) as fh:  # 128 MiB of one repeated row: >100x smaller on disk
        row = json.dumps({"question": "a" * 1000, "answer": "1"}).encode() + b"\n"
        block = row * 1024
        for _ in range((128 << 20) // len(block)):
            fh.write(block)
    assert f.stat().st_size * 100 < 128 << 20
    with pytest.raises(InputRefused, match=r"decompresses past \d+ bytes \(max_expansion\): refusing a possible gzip bomb"):
        _rows(f)
    ok = tmp_path / "fine.jsonl.gz"  # ordinary gzip text passes
    with gzip.open(ok, "wb") as fh:
        fh.write(b"".join(json.dumps({"question": f"q{i} {i * 7}?", "answer": str(i)}).encode() + b"\n" for i in range(2000)))
    assert len(_rows(ok)[0]) == 2000


def test_parquet_row_groups_that_inflate_100x_are_refused(tmp_path):
    f = tmp_path / "bomb.parquet"
    table = pa.table({"question": ["z" * 100_000 + str(i) for i in range(300)], "answer": ["1"] * 300})  # 30 MB
    pq.write_table(table, f, compression="zstd", row_group_size=100, use_dictionary=False)
    assert f.stat().st_size * 100 < table.nbytes
    with pytest.raises(InputRefused, match=r"row group 0 decompresses \d+x its size .* > max_expansion 64"):
        _rows(f, "parquet")
    small = ReadLimits(max_row_group_bytes=1 << 20, max_expansion=1e9)
    with pytest.raises(InputRefused, match="row group 0 decompresses to \\d+ bytes > max_row_group_bytes 1048576"):
        _rows(f, "parquet", small)
    fine = tmp_path / "fine.parquet"
    pq.write_table(pa.table({"question": [f"q{i}?" for i in range(500)], "answer": [str(i) for i in range(500)]}), fine)
    assert [n for n, _ in _rows(fine, "parquet")[0]] == list(range(1, 501))


def test_limits_are_ingest_config_keys():
    from app.config.ingest import IngestConfig

    cfg = IngestConfig(limits={"max_line_bytes": 4096, "max_expansion": 10})
    assert ReadLimits(**cfg.limits.model_dump()) == ReadLimits(max_line_bytes=4096, max_expansion=10.0)
