"""The shard stream under torchrun: 2 processes x 2 loader workers on gloo see every sample exactly once per
epoch, with the same number of steps on each process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from caption_data import colour_shards

SCRIPT = Path(__file__).with_name("shard_stream_world.py")


@pytest.mark.slow
def test_two_processes_with_two_workers_each_see_every_sample_once_per_epoch(tmp_path):
    # 7 shards of 5 samples = 35, global batch 4: 8 steps, 32 samples an epoch, 3 wait for the next one.
    colour_shards(tmp_path / "shards", tmp_path / "videos", per_shard=5, count=35)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["--shards", str(tmp_path / "shards"), "--out", str(tmp_path), "--batch", "4", "--workers", "2"]
    done = subprocess.run([*launcher, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "keys.json").read_text())
    assert result["backend"] == "gloo" and result["world_size"] == 2
    seen_first = None
    for epoch in result["epochs"]:
        rank0, rank1 = epoch
        assert len(rank0) == len(rank1) == 8  # the same steps on both processes
        assert all(len(batch) == 2 for batch in rank0 + rank1)  # the local half of each global batch of 4
        keys = [k for rank in epoch for batch in rank for k in batch]
        assert len(keys) == len(set(keys)) == 32  # every sample at most once; all but 35 mod 4
        seen_first = seen_first or set(keys)
    assert set(k for rank in result["epochs"][1] for b in rank for k in b) != seen_first  # reshuffled
