"""amc.publish.load on local folders: each folder reads its own rows, whatever datasets' cache holds."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from amc.publish import load

CARD = """---
configs:
- config_name: sft_critic
  data_files:
  - split: train
    path: sft_critic/train-*
  - split: test
    path: sft_critic/test-*
---
"""


def _folder(root: Path, n_test: int) -> Path:
    folder = root / "published"  # the same name in every test: datasets keyed its cache by it
    (folder / "sft_critic").mkdir(parents=True)
    (folder / "README.md").write_text(CARD, encoding="utf-8")
    for split, n in (("train", 3), ("test", n_test)):
        table = pa.table({"prompt": [f"{split} {i}" for i in range(n)], "completion": ["c"] * n})
        pq.write_table(table, folder / "sft_critic" / f"{split}-00000-of-00001.parquet")
    return folder


def test_two_folders_of_the_same_name_do_not_share_rows(tmp_path):
    first, second = _folder(tmp_path / "a", 5), _folder(tmp_path / "b", 9)
    assert len(load(first, "sft_critic", split="test")) == 5
    assert len(load(second, "sft_critic", split="test")) == 9
    assert len(load(first, "sft_critic", split="test")) == 5


def test_a_folder_rewritten_in_place_is_read_again(tmp_path):
    folder = _folder(tmp_path, 2)
    assert len(load(folder, "sft_critic", split="test")) == 2
    table = pa.table({"prompt": ["x"] * 4, "completion": ["c"] * 4})
    pq.write_table(table, folder / "sft_critic" / "test-00000-of-00001.parquet")
    assert load(folder, "sft_critic", split="test")["prompt"] == ["x"] * 4
