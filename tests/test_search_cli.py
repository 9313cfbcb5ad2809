"""`cmadapter index` and `cmadapter search` as a user runs them, including a SIGKILL mid-index."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from cmadapter.cli import main
from search_fixtures import index_contents, other_backbone_adapter, video


def cmadapter(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cmadapter", *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def videos(tmp_path):
    folder = tmp_path / "videos"
    for i in range(6):
        video(folder / f"v{i}.mp4", 3 + i, shift=2 * i)
    (folder / "broken.mp4").write_bytes(b"\0" * 1000)
    return folder


def test_index_then_search_json(videos, tmp_path, tiny_weights, capsys):
    out = tmp_path / "index"
    assert main(["index", str(videos), "--out", str(out), "--pretrained", str(tiny_weights), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "6 files" in printed and "broken.mp4" in printed and "1 files could not be indexed" in printed
    assert main(["search", str(out), "a grey picture", "-k", "3", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert len(results) == 3
    for result in results:
        assert {"video", "start", "end", "score", "best_frame_time"} <= set(result)
        assert result["start"] <= result["best_frame_time"] < result["end"]
    assert main(["search", str(out), "a grey picture", "-k", "2"]) == 0
    assert "2 videos for 'a grey picture'" in capsys.readouterr().out


def test_errors_are_one_line(videos, tmp_path, tiny_weights, capsys):
    out = tmp_path / "index"
    assert main(["index", str(videos), "--out", str(out), "--pretrained", str(tiny_weights), "--quiet"]) == 0
    capsys.readouterr()
    other = other_backbone_adapter(tmp_path)
    cases = [
        (["search", str(out), ""], "query is empty"),
        (["search", str(videos), "grey"], "is not a video index"),
        (["search", str(out), "grey", "--adapter", "nope"], "no adapter 'nope'"),
        (["index", str(videos), "--out", str(out), "--adapter", f"other={other}"], "different backbone"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


@pytest.mark.slow
def test_a_killed_index_run_resumes_to_the_same_index(videos, tmp_path, tiny_weights):
    args = [str(videos), "--pretrained", str(tiny_weights), "--quiet", "--window", "2", "--stride", "1"]
    killed = tmp_path / "killed"
    # Each file waits a second inside its transaction: the kill lands mid-file, after some have committed.
    run = cmadapter("index", *args, "--out", str(killed), env={"CMADAPTER_INDEX_TEST_DELAY": "1"})
    deadline = time.time() + 120
    committed = 0
    while time.time() < deadline and committed < 2:
        time.sleep(0.2)
        try:
            db = sqlite3.connect(killed / "index.sqlite")
            committed = db.execute("SELECT COUNT(*) FROM features").fetchone()[0]
            db.close()
        except sqlite3.Error:
            committed = 0
        assert run.poll() is None, run.communicate()
    time.sleep(0.5)
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert 2 <= committed < 6
    partial = index_contents(killed)
    assert 2 <= len(partial["files"]) < 6
    # The partial index opens and searches what it holds.
    search = cmadapter("search", str(killed), "grey", "--json")
    out, err = search.communicate(timeout=120)
    assert search.returncode == 0, err
    assert len(json.loads(out)["results"]) == len(partial["files"])

    rerun = cmadapter("index", *args, "--out", str(killed), "--json")
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    report = json.loads(out)
    assert report["encoded"]["zero-shot"]["files"] == 6 - len(partial["files"])
    straight = tmp_path / "straight"
    clean = cmadapter("index", *args, "--out", str(straight))
    assert clean.wait(timeout=300) == 0
    assert index_contents(killed) == index_contents(straight)
