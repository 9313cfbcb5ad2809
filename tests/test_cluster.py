"""`prepare --ray` and `index --ray` on a local Ray with 2 CPUs: the same results as the local path, failed
videos reported the same way, and a worker killed mid-run costs nothing (every video exactly once)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="pip install 'cmadapter[ray]'")
pytestmark = pytest.mark.slow  # a local Ray starts once for the module (~10 s), and each test runs jobs on it

from cmadapter.cluster.prepare import prepare_on_ray  # noqa: E402
from cmadapter.video.cache import PrepareOptions, prepare_cache, read_report  # noqa: E402
from cmadapter.video.sources import VideoFolder  # noqa: E402
from media import write_video  # noqa: E402

TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def local_ray():
    # Workers import the test's job wrappers from this folder, and the package from the same place.
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield ray
    ray.shutdown()


@pytest.fixture
def videos(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for i in range(6):
        write_video(folder / f"v{i}.mp4", 6 + 2 * i, rate=4)
    (folder / "broken.mp4").write_bytes(b"not a video at all" * 50)
    return VideoFolder(folder)


IDS = [f"v{i}" for i in range(6)] + ["broken", "absent"]


def cache_contents(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "frames").iterdir())}


def test_prepare_on_ray_equals_the_local_cache(local_ray, videos, tmp_path):
    options = PrepareOptions(fps=2, short_side=32, progress=False)
    local = prepare_cache(IDS, videos, tmp_path / "local", options)
    on_ray = prepare_on_ray(IDS, videos, tmp_path / "ray", options)
    assert (on_ray.written, on_ray.skipped) == (local.written, local.skipped) == (6, 0)
    assert cache_contents(tmp_path / "ray") == cache_contents(tmp_path / "local")
    problems = lambda root: sorted((p.video_id, p.status, p.reason) for p in read_report(root))
    assert problems(tmp_path / "ray") == problems(tmp_path / "local")
    assert {p[:2] for p in problems(tmp_path / "ray")} == {("broken", "undecodable"), ("absent", "missing")}
    # Either path completes what the other began.
    (tmp_path / "ray" / "frames" / "v3.npy").unlink()
    again = prepare_cache(IDS, videos, tmp_path / "ray", options)
    assert (again.written, again.skipped) == (1, 5)
    assert cache_contents(tmp_path / "ray") == cache_contents(tmp_path / "local")


def test_a_worker_killed_mid_run_is_retried_and_every_video_lands_once(local_ray, videos, tmp_path, monkeypatch):
    from ray_jobs import cache_video_dying_once

    marker = tmp_path / "died"
    monkeypatch.setenv("CMADAPTER_TEST_DIE_ON", "v2")
    monkeypatch.setenv("CMADAPTER_TEST_DIE_MARKER", str(marker))
    # The workers read the variables from the task's environment: pass them along explicitly.
    options = PrepareOptions(fps=2, short_side=32, progress=False)
    report = prepare_on_ray(IDS, videos, tmp_path / "ray", options, job=_with_env(cache_video_dying_once))
    assert marker.exists(), "no worker died: the test did not test anything"
    assert report.written == 6
    local = prepare_cache(IDS, videos, tmp_path / "local", options)
    assert local.written == 6
    assert cache_contents(tmp_path / "ray") == cache_contents(tmp_path / "local")
    assert not list((tmp_path / "ray" / "frames").glob("*.tmp*"))
    for name in cache_contents(tmp_path / "ray"):
        assert np.load(tmp_path / "ray" / "frames" / name).ndim == 4


def _with_env(job):
    names = ("CMADAPTER_TEST_DIE_ON", "CMADAPTER_TEST_DIE_MARKER")
    values = {name: os.environ[name] for name in names}

    def run(*args):
        os.environ.update(values)
        return job(*args)

    return run


def test_index_on_ray_equals_the_local_index_and_either_extends_it(local_ray, tmp_path, tiny_weights):
    from cmadapter.cluster.index import index_on_ray
    from cmadapter.search.build import BuildOptions, build_index
    from search_fixtures import adapter_file, index_contents
    from search_fixtures import video as small_video

    media = tmp_path / "media"
    for i in range(4):
        small_video(media / f"c{i}.mp4", 3 + i, shift=3 * i)
    (media / "broken.mp4").write_bytes(b"\x00" * 500)
    adapter = adapter_file(tiny_weights, tmp_path / "a.safetensors")
    kwargs = dict(pretrained=str(tiny_weights), adapters={"demo": adapter}, zero_shot=True,
                  options=BuildOptions(window=2, stride=1, progress=False))  # fmt: skip
    local = build_index([media], tmp_path / "local", **kwargs)
    on_ray = index_on_ray([media], tmp_path / "ray", **kwargs)
    assert (
        (on_ray.files, on_ray.segments, on_ray.frames)
        == (local.files, local.segments, local.frames)
        == (4, on_ray.segments, on_ray.frames)
    )
    assert on_ray.problems == local.problems and list(on_ray.problems) == [str(media / "broken.mp4")]
    expected, got = index_contents(tmp_path / "local"), index_contents(tmp_path / "ray")
    assert got["files"].keys() == expected["files"].keys()
    assert got["segments"] == expected["segments"]
    # Every (file, adapter) row of one index is in the other, and no more (4 files x 2 adapters).
    assert [row[:2] for row in got["features"]] == [row[:2] for row in expected["features"]]
    assert len(expected["features"]) == 8
    for (_, _, frames_a, _), (_, _, frames_b, _) in zip(expected["features"], got["features"], strict=True):
        a, b = np.frombuffer(frames_a, np.float16), np.frombuffer(frames_b, np.float16)
        assert a.shape == b.shape and np.allclose(a, b, atol=2e-3, rtol=1e-2)  # same frames; fp16 rounding at most
    # Extended by either path: a new file indexed by the local path into the Ray-built index, and back.
    small_video(media / "c9.mp4", 3, shift=40)
    again = build_index([media], tmp_path / "ray", **kwargs)
    assert again.new == [str(media / "c9.mp4")] and again.encoded["demo"]["files"] == 1
    (media / "c0.mp4").unlink()
    once_more = index_on_ray([media], tmp_path / "ray", **kwargs)
    assert once_more.deleted == [str(media / "c0.mp4")] and once_more.encoded["demo"]["files"] == 0


def test_index_on_ray_survives_a_killed_worker(local_ray, tmp_path, tiny_weights, monkeypatch):
    from cmadapter.cluster.index import index_on_ray
    from cmadapter.search.build import BuildOptions
    from ray_jobs import decode_item_dying_once
    from search_fixtures import index_contents
    from search_fixtures import video as small_video

    media = tmp_path / "media"
    for i in range(4):
        small_video(media / f"c{i}.mp4", 3 + i, shift=3 * i)
    marker = tmp_path / "died"
    monkeypatch.setenv("CMADAPTER_TEST_DIE_ON", "c2.mp4")
    monkeypatch.setenv("CMADAPTER_TEST_DIE_MARKER", str(marker))
    options = BuildOptions(window=2, stride=1, progress=False)
    report = index_on_ray([media], tmp_path / "ray", pretrained=str(tiny_weights), options=options,
                          decode=_with_env(decode_item_dying_once))  # fmt: skip
    assert marker.exists(), "no worker died: the test did not test anything"
    assert report.files == 4 and not report.problems
    contents = index_contents(tmp_path / "ray")
    assert len(contents["files"]) == 4
    paths = [row[0] for row in contents["features"]]
    assert sorted(paths) == sorted(set(paths))  # every file exactly once
