"""An index on a real, changing collection: files that break after indexing, stale FAISS files, names that are
not UTF-8, renames, rewrites that keep size and mtime, two writers, runs that die on one file, long videos in
bounded memory, bounded work per query, and a server that follows the index while `index` runs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import tracemalloc
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import av
import httpx
import numpy as np
import pytest

from cmadapter.cli import main
from cmadapter.search import api as api_module
from cmadapter.search import encoder as encoder_module
from cmadapter.search import pipeline as pipeline_module
from cmadapter.search.api import MAX_CANDIDATES, VideoIndex
from cmadapter.search.build import BuildOptions, build_index
from cmadapter.search.encoder import load_model
from cmadapter.search.errors import SearchError
from cmadapter.search.lock import IndexBusy, index_lock
from cmadapter.search.pipeline import PipelineOptions, encode_works
from cmadapter.search.plan import MAX_ATTEMPTS
from cmadapter.serve.app import create_app
from cmadapter.serve.local_server import running_server
from media import write_video
from search_fixtures import adapter_file, count_encoded, index_contents, video

QUIET = BuildOptions(fps=1, window=4, stride=2, progress=False)
FLAT = BuildOptions(fps=1, window=4, stride=2, progress=False, factory="Flat")


@pytest.fixture
def folder(tmp_path):
    videos = tmp_path / "videos"
    video(videos / "a.mp4", 9)
    video(videos / "b.mp4", 3, shift=5)
    video(videos / "c.mp4", 6, shift=9)
    return videos


def names(found) -> list[str]:
    return sorted(os.path.basename(r.best.video) for r in found.results)


def ranking(index: VideoIndex, query: str, adapter: str | None = None) -> list[tuple]:
    found = index.search(query, k=50, adapter=adapter)
    return [(os.path.basename(h.video), h.start, round(h.score, 5)) for r in found.results for h in [r.best, *r.others]]


def cut_off(path, fraction: float = 0.4) -> None:
    """Rewrite ``path`` in place with its first bytes only, as an interrupted re-download leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def test_a_file_that_breaks_after_indexing_leaves_search_working_and_stays_out(folder, tmp_path, tiny_weights):
    out = tmp_path / "index"
    build_index([folder], out, pretrained=str(tiny_weights), options=QUIET)
    with VideoIndex.open(out) as index:
        assert names(index.search("grey", k=10)) == ["a.mp4", "b.mp4", "c.mp4"]
        cut_off(folder / "a.mp4")
        report = build_index([folder], out, options=QUIET)
        assert list(map(os.path.basename, report.problems)) == ["a.mp4"] and report.files == 2
        # The open index (as a server holds it) follows: the broken file is gone, nothing fails.
        assert names(index.search("grey", k=10)) == ["b.mp4", "c.mp4"]
    again = build_index([folder], out, options=QUIET)  # the rerun keeps it out, and has nothing to do
    assert list(map(os.path.basename, again.problems)) == ["a.mp4"] and not again.model_loaded
    with VideoIndex.open(out) as index:
        assert names(index.search("grey", k=10)) == ["b.mp4", "c.mp4"]
        video(folder / "a.mp4", 9)  # repaired: back in
        build_index([folder], out, options=QUIET)
        assert names(index.search("grey", k=10)) == ["a.mp4", "b.mp4", "c.mp4"]


def test_a_stale_faiss_file_gives_the_answers_of_the_current_data(folder, tmp_path, tiny_weights):
    out, fresh = tmp_path / "index", tmp_path / "fresh"
    build_index([folder], out, pretrained=str(tiny_weights), options=FLAT)
    stale = tmp_path / "ann-then"
    shutil.copytree(out / "ann", stale)
    (folder / "c.mp4").unlink()  # gone
    video(folder / "b.mp4", 5, shift=7)  # changed: new segments
    video(folder / "d.mp4", 4, shift=13)  # new
    build_index([folder], out, options=FLAT)
    shutil.rmtree(out / "ann")
    shutil.copytree(stale, out / "ann")  # the FAISS file of before, as an `index` run killed before saving leaves it
    build_index([folder], fresh, pretrained=str(tiny_weights), options=FLAT)
    with VideoIndex.open(out) as index, VideoIndex.open(fresh) as exact:
        stage1 = index.stage1("zero-shot")
        assert stage1.base_data is not None and len(stage1.delta_ids) > 0  # the old file, plus what came after
        for query in ("grey", "a white square", "a dark frame"):
            assert ranking(index, query) == ranking(exact, query)
        assert names(index.search("grey", k=10)) == ["a.mp4", "b.mp4", "d.mp4"]


ODD_NAMES = [
    b"bad\xff name.mp4",
    "spaces and \u00fcmlauts.mp4".encode(),
    b"-leading-dash.mp4",
    b"new\nline.mp4",
    b"zz.mp4",
]


@pytest.mark.slow
def test_names_that_are_not_utf8_are_indexed_searched_and_served(tmp_path, tiny_weights):
    folder = tmp_path / "videos"
    for i, name in enumerate(ODD_NAMES):
        video(folder / "tmp.mp4", 2 + i, shift=3 * i)
        os.rename(folder / "tmp.mp4", os.fsencode(folder) + b"/" + name)
    out = tmp_path / "index"
    run = subprocess.run(
        [sys.executable, "-m", "cmadapter", "index", str(folder), "--out", str(out), "--pretrained", str(tiny_weights),
         "--quiet", "--window", "2", "--stride", "1"],
        capture_output=True, text=True, env={**os.environ, "PYTHONIOENCODING": "utf-8"}, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "5 files" in run.stdout and "could not be indexed" not in run.stdout
    shown = subprocess.run(
        [sys.executable, "-m", "cmadapter", "search", str(out), "grey", "-k", "10", "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    printed = {os.path.basename(r["video"]) for r in json.loads(shown.stdout)["results"]}
    assert printed == {
        "bad\\xff name.mp4",
        "spaces and \u00fcmlauts.mp4",
        "-leading-dash.mp4",
        "new\nline.mp4",
        "zz.mp4",
    }
    with VideoIndex.open(out) as index:
        hits = {os.fsencode(os.path.basename(r.best.video)): r.best for r in index.search("grey", k=10).results}
        assert set(hits) == set(ODD_NAMES)
        bad = hits[b"bad\xff name.mp4"]
        assert os.path.exists(bad.video)  # the exact name, usable as a path
    from fastapi.testclient import TestClient

    with TestClient(create_app(out), base_url="http://127.0.0.1") as client:
        answer = client.get("/api/search", params={"q": "grey", "k": 10})
        assert answer.status_code == 200, answer.text
        served = client.get(f"/api/media/{bad.video_id}")
        assert served.status_code == 200 and served.content == Path(bad.video).read_bytes()


def test_a_renamed_file_keeps_its_row_and_features(folder, tmp_path, tiny_weights, monkeypatch):
    out = tmp_path / "index"
    build_index([folder], out, pretrained=str(tiny_weights), options=QUIET)
    with VideoIndex.open(out) as index:
        before = {os.path.basename(r.best.video): r.best.video_id for r in index.search("grey", k=10).results}
    (folder / "moved").mkdir()
    os.rename(folder / "a.mp4", folder / "moved" / "renamed a.mp4")
    encoded = count_encoded(monkeypatch)
    report = build_index([folder], out, options=QUIET)
    assert encoded == [] and not report.model_loaded and not report.new and not report.deleted
    assert report.renamed == [(str(folder / "a.mp4"), str(folder / "moved" / "renamed a.mp4"))]
    with VideoIndex.open(out) as index:
        after = {os.path.basename(r.best.video): r.best.video_id for r in index.search("grey", k=10).results}
    assert after == {"renamed a.mp4": before["a.mp4"], "b.mp4": before["b.mp4"], "c.mp4": before["c.mp4"]}
    fresh = tmp_path / "fresh"
    build_index([folder], fresh, pretrained=str(tiny_weights), options=QUIET)
    ours, theirs = index_contents(out), index_contents(fresh)
    assert ours["segments"] == theirs["segments"] and ours["features"] == theirs["features"]


def test_a_rewrite_that_keeps_size_and_mtime_is_detected(folder, tmp_path, tiny_weights):
    out = tmp_path / "index"
    build_index([folder], out, pretrained=str(tiny_weights), options=QUIET)
    target = folder / "b.mp4"
    before = target.stat()
    data = bytearray(target.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])  # same size, other bytes
    target.write_bytes(data)
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))  # as `touch -r` or a time-keeping copy does
    assert (target.stat().st_size, target.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    report = build_index([folder], out, options=QUIET)
    assert report.changed == [str(target)]  # hashed again, found different: re-encoded (or, if now broken, a problem)
    touched = build_index([folder], out, options=QUIET)  # and a second run sees nothing to do
    assert not touched.changed and not touched.model_loaded


def test_files_the_index_writes_are_readable_by_other_users(folder, tmp_path, tiny_weights):
    previous = os.umask(0o022)
    try:
        out = tmp_path / "index"
        adapter = adapter_file(tiny_weights, tmp_path / "tuned.safetensors")
        build_index([folder], out, pretrained=str(tiny_weights), adapters={"tuned": adapter}, options=QUIET)
    finally:
        os.umask(previous)
    written = [out / "index.sqlite", *(out / "ann").iterdir(), *(out / "adapters").iterdir()]
    assert len(written) >= 1 + 3 + 1
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) & 0o044 == 0o044, path


def test_a_second_writer_stops_with_one_line_naming_the_first(folder, tmp_path, tiny_weights, capsys):
    out = tmp_path / "index"
    with index_lock(out):
        with pytest.raises(IndexBusy, match=f"process {os.getpid()} on"):
            build_index([folder], out, pretrained=str(tiny_weights), options=QUIET)
        assert main(["index", str(folder), "--out", str(out), "--pretrained", str(tiny_weights), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "being updated by another `cmadapter index`" in err and err.count("\n") == 1, err
        began = time.monotonic()
        with pytest.raises(IndexBusy), index_lock(out, wait=0.5):
            pass
        assert time.monotonic() - began >= 0.5
    # A holder killed with SIGKILL leaves no lock behind.
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom cmadapter.search.lock import index_lock\n"
         "with index_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(600)\n", str(out)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(IndexBusy, match=f"process {holder.pid} on"), index_lock(out):
        pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with index_lock(out, wait=5):
        pass
    build_index([folder], out, pretrained=str(tiny_weights), options=QUIET)


class _Killed(BaseException):
    """Stands for the process dying at that point (as an out-of-memory kill while decoding would)."""


def test_a_file_that_runs_keep_dying_on_becomes_a_problem(folder, tmp_path, tiny_weights, monkeypatch):
    out = tmp_path / "index"
    deadly = str(folder / "b.mp4")
    real = pipeline_module.stream_path_grid

    def dies_decoding_b(path, *args):
        for i, item in enumerate(real(path, *args)):
            if str(path) == deadly and i == 1:
                raise _Killed
            yield item

    monkeypatch.setattr(pipeline_module, "stream_path_grid", dies_decoding_b)
    for _ in range(MAX_ATTEMPTS):
        with pytest.raises(_Killed):
            build_index([folder], out, pretrained=str(tiny_weights), options=QUIET)
    report = build_index([folder], out, options=QUIET)
    assert report.files == 2 and list(report.problems) == [deadly]  # only the file being decoded, not its neighbours
    assert f"{MAX_ATTEMPTS} index runs stopped while processing this file" in report.problems[deadly]
    monkeypatch.setattr(pipeline_module, "stream_path_grid", real)
    os.utime(deadly, ns=(0, 10**18))  # it changed: tried again
    assert build_index([folder], out, options=QUIET).files == 3


@pytest.mark.slow
def test_a_long_video_is_encoded_in_memory_that_does_not_grow_with_its_length(tmp_path, tiny_weights, monkeypatch):
    model = load_model(None, str(tiny_weights), {})
    real = pipeline_module.encode_with_adapters

    def slow_encoder(*args):  # as a real backbone is next to decoding: the decoder must wait, not run ahead
        time.sleep(0.1)
        return real(*args)

    monkeypatch.setattr(pipeline_module, "encode_with_adapters", slow_encoder)
    peaks = {}
    for seconds in (60, 60, 600):  # the first run warms up what is allocated once
        path = tmp_path / f"{seconds}s.mp4"
        path.is_file() or write_video(path, seconds, rate=1, size=(48, 32))
        work = SimpleNamespace(item=SimpleNamespace(path=str(path)), missing=["zero-shot"])
        tracemalloc.start()
        [(_, encoded)] = encode_works(model, [work], Fraction(1), PipelineOptions(batch_size=16))  # as `index` runs
        peaks[seconds] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert len(encoded.times) == len(encoded.features["zero-shot"]) == seconds
    held = 600 * 48 * 32 * 3  # the long video's decoded frames, were they all held at once
    assert peaks[600] - peaks[60] < held / 4, peaks


def test_stage_two_reads_only_the_chunks_of_its_candidates(tmp_path, tiny_weights):
    (tmp_path / "videos").mkdir()
    write_video(tmp_path / "videos" / "long.mp4", 240, rate=1, size=(48, 32))
    out = tmp_path / "index"
    build_index([tmp_path / "videos"], out, pretrained=str(tiny_weights), options=QUIET)
    with VideoIndex.open(out) as index:
        with index.snapshot() as snapshot:
            chunk, dim = snapshot.store.frame_chunk, index.dim
            snapshot.store.bytes_read = 0
        index.search("grey", k=1, candidates=5)
        with index.snapshot() as snapshot:
            read = snapshot.store.bytes_read
    per_segment = (4 // chunk + 1) * chunk * dim * 2  # a window of 4 frames spans at most two chunks
    assert 0 < read <= 5 * per_segment and read < 240 * dim * 2 / 5, (read, per_segment)


def test_deep_pages_rerank_at_most_the_cap_and_reuse_the_ranking(folder, tmp_path, tiny_weights, monkeypatch):
    out = tmp_path / "index"
    build_index([folder], out, pretrained=str(tiny_weights), options=QUIET)
    asked = []
    real = api_module.two_stage
    monkeypatch.setattr(api_module, "two_stage", lambda *a, **k: asked.append(k["candidates"]) or real(*a, **k))
    with VideoIndex.open(out) as index:
        index.search("grey", k=1101)  # what offset=1000, k=100 (and one more) asks for
        assert asked == [MAX_CANDIDATES]
        first = index.search("grey", k=3)
        second = index.search("grey", k=6)  # the next page: the same candidates, ranked once
        assert asked == [MAX_CANDIDATES, 200]
        assert [r.best.segment_id for r in second.results][:3] == [r.best.segment_id for r in first.results]


@pytest.mark.slow
def test_a_running_server_follows_index_runs(folder, tmp_path, tiny_weights):
    out = tmp_path / "index"
    first = adapter_file(tiny_weights, tmp_path / "first.safetensors", seed=3)
    build_index([folder], out, pretrained=str(tiny_weights), adapters={"x": first}, options=QUIET)
    with running_server(create_app(out)) as url, httpx.Client(base_url=url, timeout=60) as client:

        def listing(adapter="x"):
            answer = client.get("/api/search", params={"q": "grey", "k": 50, "adapter": adapter})
            assert answer.status_code == 200, answer.text
            return answer.json()

        start = listing()
        assert sorted(os.path.basename(r["video"]) for r in start["results"]) == ["a.mp4", "b.mp4", "c.mp4"]
        video(folder / "d.mp4", 4, shift=13)
        build_index([folder], out, options=QUIET)
        grown = listing()
        assert len(grown["results"]) == 4 and grown["generation"] > start["generation"]
        gone = next(r for r in grown["results"] if r["video"].endswith("a.mp4"))
        (folder / "a.mp4").unlink()
        build_index([folder], out, options=QUIET)
        shrunk = listing()
        assert sorted(os.path.basename(r["video"]) for r in shrunk["results"]) == ["b.mp4", "c.mp4", "d.mp4"]
        assert client.get(gone["media_url"]).status_code == 404
        for result in shrunk["results"]:
            assert client.get(result["media_url"]).status_code == 200
            assert client.get(result["thumb_urls"][0]).status_code == 200
        # A replaced adapter: the server scores with the new weights, as a freshly opened index does.
        second = adapter_file(tiny_weights, tmp_path / "second.safetensors", seed=11)
        build_index([folder], out, adapters={"x": second}, options=QUIET)
        served = [(r["video"], r["score"]) for r in listing()["results"]]
        with VideoIndex.open(out) as fresh:
            expected = [
                (r.best.to_dict()["video"], round(r.best.score, 6))
                for r in fresh.search("grey", k=50, adapter="x").results
            ]
        assert served == expected
        assert served != [(r["video"], r["score"]) for r in shrunk["results"]]


_VERSION_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE adapters (name TEXT PRIMARY KEY, sha256 TEXT, method TEXT);
CREATE TABLE files (
    id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, hash TEXT NOT NULL,
    frame_count INTEGER NOT NULL, times BLOB NOT NULL);
CREATE TABLE segments (
    id INTEGER PRIMARY KEY AUTOINCREMENT, file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    first INTEGER NOT NULL, stop INTEGER NOT NULL, start REAL NOT NULL, "end" REAL NOT NULL);
CREATE INDEX segments_file ON segments(file_id);
CREATE TABLE features (
    file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE, adapter TEXT NOT NULL,
    frames BLOB NOT NULL, segments BLOB NOT NULL, PRIMARY KEY (file_id, adapter));
CREATE TABLE problems (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, reason TEXT NOT NULL);
"""


def _as_version_1(new, old) -> None:
    """Write the index at ``new`` in the layout cmadapter wrote before version 2, at ``old``."""
    import sqlite3

    old.mkdir()
    source, target = sqlite3.connect(new / "index.sqlite"), sqlite3.connect(old / "index.sqlite")
    target.executescript(_VERSION_1)
    for key, value in source.execute("SELECT key, value FROM meta WHERE key NOT IN ('frame_chunk')"):
        target.execute("INSERT INTO meta VALUES (?, ?)", (key, "1" if key == "version" else value))
    for name, sha, method in source.execute("SELECT name, sha256, method FROM adapters"):
        target.execute("INSERT INTO adapters VALUES (?, ?, ?)", (name, sha, method))
        if sha:
            (old / "adapters").mkdir(exist_ok=True)
            shutil.copy(
                next((new / "adapters").glob(f"{name}-*.safetensors")), old / "adapters" / f"{name}.safetensors"
            )
    for row in source.execute("SELECT id, path, kind, size, mtime_ns, hash, frame_count, times FROM files"):
        target.execute("INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (row[0], os.fsdecode(row[1]), *row[2:]))
    target.executemany("INSERT INTO segments VALUES (?, ?, ?, ?, ?, ?)", source.execute("SELECT * FROM segments"))
    for file_id, adapter, vectors in source.execute("SELECT file_id, adapter, segments FROM features"):
        chunks = source.execute(
            "SELECT data FROM frames WHERE file_id = ? AND adapter = ? ORDER BY chunk", (file_id, adapter)
        )
        frames = b"".join(r[0] for r in chunks)
        target.execute("INSERT INTO features VALUES (?, ?, ?, ?)", (file_id, adapter, frames, vectors))
    target.commit()
    source.close()
    target.close()


def test_an_index_of_version_1_is_upgraded_in_place_without_encoding(folder, tmp_path, tiny_weights, monkeypatch):
    new, old = tmp_path / "new", tmp_path / "old"
    adapter = adapter_file(tiny_weights, tmp_path / "tuned.safetensors")
    build_index([folder], new, pretrained=str(tiny_weights), adapters={"tuned": adapter}, zero_shot=True, options=QUIET)
    _as_version_1(new, old)
    with pytest.raises(SearchError, match="older cmadapter .* run `cmadapter index` on it once"):
        VideoIndex.open(old)
    encoded = count_encoded(monkeypatch)
    report = build_index([folder], old, options=QUIET)
    assert encoded == [] and report.unchanged == 3 and not report.model_loaded
    assert index_contents(old) == index_contents(new)
    assert not (old / "adapters" / "tuned.safetensors").exists() and len(list((old / "adapters").iterdir())) == 1
    with VideoIndex.open(old) as upgraded, VideoIndex.open(new) as built:
        for adapter_name in ("tuned", "zero-shot"):
            assert ranking(upgraded, "grey", adapter_name) == ranking(built, "grey", adapter_name)


def test_two_decoders_give_the_index_one_gives(folder, tmp_path, tiny_weights):
    video(folder / "d.mp4", 5, shift=13)
    one, two = tmp_path / "one", tmp_path / "two"
    build_index([folder], one, pretrained=str(tiny_weights), options=QUIET)
    options = BuildOptions(fps=1, window=4, stride=2, progress=False, decode_workers=2, batch_size=4)
    build_index([folder], two, pretrained=str(tiny_weights), options=options)
    ours, theirs = index_contents(two), index_contents(one)
    assert ours["features"] == theirs["features"] and ours["segments"] == theirs["segments"]


def test_frames_like_the_last_encoded_one_reuse_its_features(tmp_path, tiny_weights):
    folder = tmp_path / "videos"
    folder.mkdir()
    write_video(folder / "still.mp4", 8, rate=1, size=(48, 32), marker=True)
    write_video(folder / "moving.mp4", 8, rate=1, size=(48, 32))
    with av.open(str(folder / "static.mp4"), "w") as container:  # eight identical frames
        stream = container.add_stream("libx264", rate=1)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        for i in range(8):
            frame = av.VideoFrame.from_ndarray(np.full((32, 48, 3), 120, np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 1)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    plain, skipping = tmp_path / "plain", tmp_path / "skipping"
    build_index([folder], plain, pretrained=str(tiny_weights), options=QUIET)
    options = BuildOptions(fps=1, window=4, stride=2, progress=False, skip_similar=2.0)
    report = build_index([folder], skipping, pretrained=str(tiny_weights), options=options)
    assert report.skipped_frames == 7  # the static video's frames after its first; greys 10 levels apart all differ
    features = {os.path.basename(os.fsdecode(row[0])): row[2] for row in index_contents(skipping)["features"]}
    static = np.frombuffer(features["static.mp4"], np.float16).reshape(8, -1)
    assert (static == static[0]).all()
    reference = {os.path.basename(os.fsdecode(row[0])): row[2] for row in index_contents(plain)["features"]}
    assert features["still.mp4"] == reference["still.mp4"] and features["moving.mp4"] == reference["moving.mp4"]
    with VideoIndex.open(plain) as a, VideoIndex.open(skipping) as b:
        assert [name for name, _, _ in ranking(a, "grey")] == [name for name, _, _ in ranking(b, "grey")]


def test_a_rerun_with_nothing_to_do_starts_without_torch(folder, tmp_path, tiny_weights):
    """`cmadapter index` with nothing new plans from the index alone: torch (3 s and 600 MB to import on these
    machines) is never imported, so the rerun takes under a second."""
    out = tmp_path / "index"
    build_index([folder], out, pretrained=str(tiny_weights), options=QUIET)
    code = (
        "import sys; from cmadapter.cli import main; "
        f"code = main(['index', {str(folder)!r}, '--out', {str(out)!r}, '--quiet', '--json']); "
        "print('torch' in sys.modules, code)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.splitlines()[-2])
    assert report["unchanged"] == 3 and not report["model_loaded"]
    assert done.stdout.splitlines()[-1] == "False 0", done.stdout


def test_a_rerun_with_nothing_to_do_never_loads_the_model(folder, tmp_path, tiny_weights, monkeypatch):
    out = tmp_path / "index"
    build_index([folder], out, pretrained=str(tiny_weights), options=QUIET)

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(encoder_module, "load_model", no_model)  # what build imports when it needs the model
    report = build_index([folder], out, options=QUIET)
    assert report.unchanged == 3 and not report.model_loaded
    (folder / "c.mp4").unlink()
    os.utime(folder / "a.mp4", ns=(0, 10**18))  # touched only: hashed, re-stamped
    report = build_index([folder], out, options=QUIET)
    assert report.deleted == [str(folder / "c.mp4")] and report.restamped == [str(folder / "a.mp4")]
