"""`cmadapter export`: Parquet that other engines read as they are, holding exactly what the index holds, from one
generation, written whole or not at all."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import cmadapter.search.export as export_module
from cmadapter.cli.app import main
from cmadapter.search.api import VideoIndex
from cmadapter.search.build import BuildOptions
from cmadapter.search.errors import SearchError
from cmadapter.search.export import export_index
from example_media import pattern_video
from search_fixtures import adapter_file

ODD_NAME = b"caf\xe9 \xff.mp4"  # not UTF-8: stored as the file system's bytes
QUERIES = ("colour blocks sliding left", "a red and green grid", "something blue")


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_weights):
    root = tmp_path_factory.mktemp("export")
    videos = root / "videos"
    for seed in range(4):
        pattern_video(videos / f"clip{seed}.mp4", seed)
    pattern_video(Path(os.fsdecode(os.fsencode(str(videos)) + b"/" + ODD_NAME)), 9)
    adapter = adapter_file(tiny_weights, root / "demo.safetensors")
    options = BuildOptions(window=2, stride=1, progress=False)
    VideoIndex.build(
        [videos], root / "index", pretrained=str(tiny_weights), adapters={"demo": adapter}, zero_shot=True,
        options=options,
    )  # fmt: skip
    report = export_index(root / "index", root / "export", frames_per_batch=7)  # several batches
    index = VideoIndex.open(root / "index")
    yield root, index, report
    index.close()


def test_the_export_holds_every_segment_and_frame_exactly(exported):
    root, index, report = exported
    manifest = json.loads((root / "export" / "export.json").read_text())
    assert manifest["format"] == "cmadapter-export" and manifest["generation"] == index.generation
    assert manifest["model"]["dim"] == index.dim and manifest["counts"] == {"videos": 5, "segments": 15, "frames": 20}
    columns = {name: a["vector_column"] for name, a in manifest["adapters"].items()}
    assert columns == {"demo": "vector_demo", "zero-shot": "vector_zero_shot"}
    assert manifest["adapters"]["demo"]["head"]["name"] == "text-pool"
    segments = pq.read_table(root / "export" / "segments.parquet").to_pylist()
    frames = pq.read_table(root / "export" / "frames.parquet").to_pylist()
    with index.snapshot() as snapshot, snapshot.reading() as store:
        rows, files = store.segments(), {row.id: row for row in store.files().values()}
        for adapter, column in columns.items():
            ids, vectors, _ = store.segment_vectors(adapter, index.dim)
            by_id = dict(zip(ids.tolist(), vectors))
            assert all(np.array_equal(np.asarray(s[column], np.float32), by_id[s["segment_id"]]) for s in segments)
            for file_id in files:
                stored = store.file_frames(file_id, adapter, index.dim).astype(np.float32)
                mine = [f for f in frames if f["video_id"] == file_id]
                feature = manifest["adapters"][adapter]["feature_column"]
                assert np.array_equal(np.asarray([f[feature] for f in mine], np.float32), stored)
                assert [f["time"] for f in mine] == files[file_id].times.tolist()
    assert [(s["segment_id"], s["video_id"], s["start"], s["end"]) for s in segments] == [
        (r.id, r.file_id, r.start, r.end) for r in rows
    ]
    assert all(s["first_frame"] == r.first and s["frame_count"] == r.stop - r.first for s, r in zip(segments, rows))
    # The path, losslessly: its bytes, and a readable string.
    odd = next(s for s in segments if s["video_path"].endswith(ODD_NAME))
    assert os.fsdecode(odd["video_path"]) == files[odd["video_id"]].path
    assert odd["video"].endswith("caf\\xe9 \\xff.mp4")
    assert (report.videos, report.segments, report.frames) == (5, 15, 20)


def ranked(pairs: list[tuple[int, float]], tolerance: float = 1e-5) -> list[list[int]]:
    """Ids best first, those whose scores tie (within ``tolerance``) as one sorted group."""
    groups: list[list[int]] = []
    last = None
    for segment_id, score in pairs:
        if last is None or last - score > tolerance:
            groups.append([])
        groups[-1].append(segment_id)
        last = score
    return [sorted(group) for group in groups]


def stage1_top10(index: VideoIndex, adapter: str, query: str):
    _, vector = index.query_vector(query, adapter=adapter)
    ids, scores = index.stage1(adapter).search(vector[None], 11)
    assert scores[0][9] - scores[0][10] > 1e-5, "a tie across the 10th place: pick another query"
    return vector, ranked(list(zip(ids[0][:10].tolist(), scores[0][:10].tolist())))


@pytest.mark.parametrize("adapter", ["demo", "zero-shot"])
def test_the_top_10_from_the_parquet_equals_stage_1(exported, adapter):
    root, index, _ = exported
    table = pq.read_table(root / "export" / "segments.parquet")
    column = "vector_" + adapter.replace("-", "_")
    vectors = np.asarray(table.column(column).to_pylist(), np.float32)
    for query in QUERIES:
        vector, expected = stage1_top10(index, adapter, query)
        scores = vectors @ vector
        order = np.argsort(-scores, kind="stable")[:10]
        ids = table.column("segment_id").to_numpy()
        assert ranked(list(zip(ids[order].tolist(), scores[order].tolist()))) == expected


@pytest.mark.parametrize("adapter", ["demo", "zero-shot"])
def test_duckdb_reads_the_export_and_its_top_10_equals_stage_1(exported, adapter):
    duckdb = pytest.importorskip("duckdb", reason="duckdb is a dev dependency: pip install duckdb")
    root, index, _ = exported
    column = "vector_" + adapter.replace("-", "_")
    with duckdb.connect() as con:
        for query in QUERIES:
            vector, expected = stage1_top10(index, adapter, query)
            rows = con.execute(
                f"SELECT segment_id, list_inner_product({column}, ?::FLOAT[]) AS score"
                " FROM read_parquet(?) ORDER BY score DESC LIMIT 10",
                [vector.tolist(), str(root / "export" / "segments.parquet")],
            ).fetchall()
            assert ranked(rows) == expected
        # Frames join their segments: first_frame .. first_frame + frame_count - 1 of the same video.
        joined = con.execute(
            "SELECT count(*) FROM read_parquet(?) s JOIN read_parquet(?) f ON f.video_id = s.video_id"
            " AND f.frame BETWEEN s.first_frame AND s.first_frame + s.frame_count - 1",
            [str(root / "export" / "segments.parquet"), str(root / "export" / "frames.parquet")],
        ).fetchone()[0]
        assert joined == 15 * 2  # every segment has its 2 frames


def test_an_export_is_whole_or_absent_and_replaces_an_earlier_one_only_when_done(exported, monkeypatch, tmp_path):
    root, _, _ = exported
    real, calls = export_module._tables, []

    def failing(*args):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(*args)

    monkeypatch.setattr(export_module, "_tables", failing)
    with pytest.raises(OSError, match="disk full"):
        export_index(root / "index", tmp_path / "out", frames_per_batch=4)
    assert list(tmp_path.iterdir()) == []  # no folder that looks like an export, no partial left behind
    monkeypatch.setattr(export_module, "_tables", real)
    first = export_index(root / "index", tmp_path / "out")
    manifest = (tmp_path / "out" / "export.json").read_bytes()
    calls.clear()
    monkeypatch.setattr(export_module, "_tables", failing)
    with pytest.raises(OSError, match="disk full"):
        export_index(root / "index", tmp_path / "out", frames_per_batch=4)
    assert (tmp_path / "out" / "export.json").read_bytes() == manifest  # the earlier export, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    monkeypatch.setattr(export_module, "_tables", real)
    assert export_index(root / "index", tmp_path / "out").segments == first.segments
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(SearchError, match="holds other files"):
        export_index(root / "index", tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_an_export_reads_one_generation_while_index_commits(tmp_path, tiny_weights, monkeypatch):
    videos = tmp_path / "videos"
    for seed in range(3):
        pattern_video(videos / f"clip{seed}.mp4", seed)
    options = BuildOptions(window=2, stride=1, progress=False)
    VideoIndex.build([videos], tmp_path / "index", pretrained=str(tiny_weights), options=options)
    with VideoIndex.open(tmp_path / "index") as index:
        before = index.generation
    real, calls = export_module._tables, []

    def commit_meanwhile(*args):
        calls.append(1)
        if len(calls) == 2:  # between two batches, an `index` run drops a deleted file and commits
            (videos / "clip1.mp4").unlink()
            assert VideoIndex.build([videos], tmp_path / "index", options=options).deleted
        return real(*args)

    monkeypatch.setattr(export_module, "_tables", commit_meanwhile)
    report = export_index(tmp_path / "index", tmp_path / "during", frames_per_batch=4)
    assert len(calls) == 3 and report.generation == before and report.videos == 3
    paths = set(pq.read_table(tmp_path / "during" / "segments.parquet").column("video").to_pylist())
    assert any(p.endswith("clip1.mp4") for p in paths)  # the generation it started from, whole
    monkeypatch.setattr(export_module, "_tables", real)
    after = export_index(tmp_path / "index", tmp_path / "after")
    assert after.generation > before and after.videos == 2


def test_the_command_line_exports_and_prints_the_query_vector(exported, tmp_path, capsys):
    root, index, _ = exported
    assert main(["export", str(root / "index"), "--out", str(tmp_path / "x")]) == 0
    assert "5 videos, 15 segments, 20 frames" in capsys.readouterr().out
    assert main(["search", str(root / "index"), QUERIES[0], "--vector", "--adapter", "zero-shot"]) == 0
    printed = json.loads(capsys.readouterr().out)
    _, vector = index.query_vector(QUERIES[0], adapter="zero-shot")
    assert printed["adapter"] == "zero-shot" and np.allclose(printed["vector"], vector, atol=1e-6)
    assert main(["search", str(root / "index"), "--like", "x@1", "--vector"]) == 2
    assert main(["export", str(tmp_path / "nothing"), "--out", str(tmp_path / "y")]) == 2
    assert "not a video index" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()
    shutil.rmtree(tmp_path / "x")
