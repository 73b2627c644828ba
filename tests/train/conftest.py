"""Train-area fixtures: a tiny packed SFT artifact written straight to the data contract's Parquet columns.

``packed_artifact_double`` is a named test double for the `data` area's artifact writer (same folder layout and
columns: input_ids, labels with -100 on prompt tokens, position_ids restarting per packed example, seq_len).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from app.data.synthetic import write_packed_artifact as write_packed_artifact_double


@pytest.fixture(scope="session")
def packed_artifact_double(tmp_path_factory) -> Path:
    return write_packed_artifact_double(tmp_path_factory.mktemp("sft_artifact"))
