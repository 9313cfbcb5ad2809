"""`cmadapter prepare` and `cmadapter bench decode`, end to end on tiny files."""

from __future__ import annotations

import json
import re

import pytest

from annotation_files import write_msrvtt
from cmadapter.cli import main
from cmadapter.video.cache import FrameCache, read_report
from media import truncated_copy, write_cuttable_video, write_video


def test_prepare_caches_every_video_of_the_dataset(tmp_path, capsys):
    annotations = write_msrvtt(tmp_path / "annotations")
    videos = tmp_path / "videos"
    (videos / "nested").mkdir(parents=True)
    for i in range(5):  # video5 (a test video) is missing
        write_video((videos / "nested" if i % 2 else videos) / f"video{i}.mp4", 6, rate=4)
    args = [
        "prepare",
        "msrvtt",
        "--annotations",
        str(annotations),
        "--videos",
        str(videos),
        "--out",
        str(tmp_path / "c"),
    ]
    assert main([*args, "--workers", "0", "--short-side", "32"]) == 0
    out = capsys.readouterr()
    assert "5 videos decoded, 0 already cached, 1 missing, 0 undecodable" in out.out
    assert "report.tsv" in out.err
    assert [(p.video_id, p.status) for p in read_report(tmp_path / "c")] == [("video5", "missing")]
    assert FrameCache(tmp_path / "c").spec.short_side == 32

    assert main([*args, "--workers", "0", "--short-side", "32", "--splits", "train"]) == 0
    assert "0 videos decoded, 4 already cached, 0 missing" in capsys.readouterr().out


def test_prepare_errors_are_one_line_messages(tmp_path, capsys):
    assert (
        main(
            [
                "prepare",
                "msrvtt",
                "--annotations",
                str(tmp_path),
                "--videos",
                str(tmp_path),
                "--out",
                str(tmp_path / "c"),
            ]
        )
        == 2
    )
    assert "error: no msrvtt annotation files found" in capsys.readouterr().err


def test_bench_decode_runs_on_a_tiny_video(tmp_path, capsys):
    pytest.importorskip("cv2")
    video = write_video(tmp_path / "tiny.mp4", 30, rate=10)
    assert main(["bench", "decode", str(video), "--repeat", "1", "--image-size", "32", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    methods = result["methods"]
    assert set(methods) == {"opencv-clip4clip", "pyav", "cache"}
    assert methods["pyav"]["frames"] == methods["cache"]["frames"] == 3
    assert all(m["frames_per_second"] > 0 for m in methods.values())
    assert main(["bench", "decode", str(video), "--repeat", "1", "--image-size", "32"]) == 0
    assert "vs baseline" in capsys.readouterr().out


def test_prepare_reports_truncated_videos_and_caches_the_good_ones(tmp_path, capsys):
    annotations = write_msrvtt(tmp_path / "annotations")
    videos, whole = tmp_path / "videos", tmp_path / "whole"
    videos.mkdir()
    whole.mkdir()
    for i in range(3):
        write_video(videos / f"video{i}.mp4", 6, rate=4)
    for i, suffix in zip((3, 4, 5), (".mp4", ".mkv", ".webm")):  # each cut at half its bytes
        truncated_copy(write_cuttable_video(whole / f"video{i}{suffix}"), videos / f"video{i}{suffix}", 0.5)
    out = tmp_path / "c"
    args = ["prepare", "msrvtt", "--annotations", str(annotations), "--videos", str(videos), "--out", str(out)]
    assert main([*args, "--workers", "0", "--short-side", "32"]) == 0  # as with undecodable videos
    assert "3 videos decoded, 0 already cached, 0 missing, 0 undecodable, 3 truncated" in capsys.readouterr().out
    rows = read_report(out)
    assert [(r.video_id, r.status) for r in rows] == [(f"video{i}", "truncated") for i in (3, 4, 5)]
    assert all(re.search(r"truncated: decoded [0-2]\.\d s of 3\.0 s.*; not cached", r.reason) for r in rows)
    assert sorted(FrameCache(out).missing([f"video{i}" for i in range(6)])) == ["video3", "video4", "video5"]

    assert main([*args, "--workers", "0", "--short-side", "32", "--allow-truncated"]) == 0
    assert "3 truncated (cached as decoded)" in capsys.readouterr().out
    rows = read_report(out)
    assert [r.status for r in rows] == ["truncated"] * 3 and all("cached what decoded" in r.reason for r in rows)
    assert not FrameCache(out).missing([f"video{i}" for i in range(6)])
    assert main([*args, "--workers", "0", "--short-side", "32"]) == 0  # skipped now, still reported
    assert [r.video_id for r in read_report(out)] == ["video3", "video4", "video5"]


def test_prepare_fails_on_a_directory_where_an_annotation_file_should_be(tmp_path, capsys):
    annotations = write_msrvtt(tmp_path / "annotations")
    (annotations / "MSRVTT_JSFUSION_test.csv").unlink()
    (annotations / "MSRVTT_JSFUSION_test.csv").mkdir()
    args = ["prepare", "msrvtt", "--annotations", str(annotations), "--videos", str(tmp_path), "--out", str(tmp_path)]
    assert main([*args, "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "MSRVTT_JSFUSION_test.csv is a directory" in err
