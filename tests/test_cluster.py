"""`prepare --ray` and `index --ray` on a local Ray with 2 CPUs: the same results as the local path, failed
videos reported the same way, and a worker killed mid-run costs nothing (every video exactly once)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="pip install 'cmadapter[ray]'")

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
