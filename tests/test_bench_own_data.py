"""`bench loader --sources` and `bench table` run (tiny sizes); their figures are never asserted, only their shape."""

from __future__ import annotations

import json

from caption_data import colour_rows, write_colour_files, write_shard, write_table
from cmadapter.cli import main
from cmadapter.config import load_config, save_config


def test_loader_reads_the_same_clips_from_videos_cache_and_shards(tmp_path, tiny_weights, capsys):
    rows = colour_rows(per_colour=1, long_video=False)  # 8 videos
    videos = tmp_path / "videos"
    write_colour_files(videos, rows)
    table = write_table(tmp_path / "captions.csv", rows)
    cache = tmp_path / "cache"
    args = ["prepare", "captions", "--annotations", str(table), "--videos", str(videos), "--out", str(cache)]
    assert main([*args, "--short-side", "32", "--workers", "0"]) == 0
    assert len(list((cache / "frames").glob("*.npy"))) == 8
    samples = [
        (f"{i:03d}", {"mp4": (videos / r["video"]).read_bytes(), "txt": r["caption"].encode()})
        for i, r in enumerate(rows[::2])
    ]
    write_shard(tmp_path / "shards" / "0.tar", samples)
    values = {"model.backbone": None, "model.pretrained": str(tiny_weights), "data.dataset": "captions"}
    values |= {"data.annotations": str(table), "data.videos": str(videos), "data.cache": str(cache)}
    values |= {"data.max_frames": 2, "data.workers": 0, "train.batch_size": 2, "train.precision": "fp32"}
    config = tmp_path / "c.yaml"
    save_config(load_config(None, values), config)
    capsys.readouterr()
    args = ["bench", "loader", "--config", str(config), "--sources", "videos,cache,shards"]
    assert main([*args, "--shards", str(tmp_path / "shards"), "--batches", "2", "--steps", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [s["source"] for s in report["sources"]] == ["videos", "cache", "shards"]
    assert all(s["loader_samples_per_second"] > 0 and s["headroom"] > 0 for s in report["sources"])
    assert "frame cache" in report["sources"][1]["description"] and "WebDataset" in report["sources"][2]["description"]


def test_table_reads_each_format_into_records(capsys):
    assert (
        main(["bench", "table", "--rows", "400", "--formats", "csv,tsv,jsonl,parquet", "--repeat", "1", "--json"]) == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert [r["format"] for r in report["formats"]] == ["csv", "tsv", "jsonl", "parquet"]
    assert {r["train_records"] for r in report["formats"]} == {360}  # every format: the same records
    assert all(r["seconds"] > 0 for r in report["formats"])
