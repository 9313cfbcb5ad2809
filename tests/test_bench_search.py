"""`cmadapter bench search` at a tiny size: the shape of its report, and recall that can be checked."""

import json

import torch

from cmadapter.bench.search import SearchBenchSettings, benchmark
from cmadapter.cli import main
from search_fixtures import video


def test_recall_is_one_when_stage_two_sees_every_segment_and_lower_with_few_candidates(tmp_path):
    settings = SearchBenchSettings(
        sizes=[1500], factories=["Flat"], queries=20, candidates=1500, workdir=str(tmp_path), text_backbone=None
    )
    every = benchmark(settings)["rows"][0]
    assert every["recall_at_k"] == 1.0  # stage 2 (explicit pooling) ranks as the head's own forward does
    threads = torch.get_num_threads()
    few = benchmark(SearchBenchSettings(**{**settings.__dict__, "candidates": 10}))["rows"][0]
    assert few["recall_at_k"] < 1.0  # the segment means alone miss some of the head's top 10
    assert few["recall_at_k"] == few["means_only_recall"]  # 10 candidates from an exact scan: the means' top 10
    assert torch.get_num_threads() == threads


def test_bench_search_command(tmp_path, tiny_weights, capsys):
    video(tmp_path / "videos" / "a.mp4", 3)
    video(tmp_path / "videos" / "b.mp4", 2, shift=4)
    argv = ["bench", "search", str(tmp_path / "videos"), "--sizes", "600", "--index-types", "Flat;SQ8",
            "--queries", "5", "--text-backbone", "none", "--workdir", str(tmp_path), "--pretrained",
            str(tiny_weights), "--json"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    rows = report["latency"]["rows"]
    assert [r["factory"] for r in rows] == ["Flat", "SQ8"]
    assert all(0 <= r["recall_at_k"] <= 1 and r["p50_ms"] > 0 for r in rows)
    assert rows[1]["memory_vs_flat"] < 0.5
    indexing = report["indexing"]
    assert (indexing["videos"], indexing["frames"]) == (2, 5)
    assert indexing["seconds"]["decode"] > 0 and indexing["seconds"]["encode"] > 0
    assert not list(tmp_path.glob("bench-search-*"))  # the features' temporary folder is gone
