"""README's "Train on your own videos", as a user runs it: a captions table over a folder of videos ->
`cmadapter train --captions` -> `eval` -> `index --adapter mine=runs/N/best.safetensors` -> `search --json`.

The videos are generated here (one colour each, and a longer one whose three 2-second shots are captioned as
moments); the backbone is a random tiny CLIP, so zero-shot is near chance and the adapter must learn the
colour names from the training rows. The held-out (test) rows are one clip of each of five colours and the
three moments: eight items, no two of one colour, so R@1 is not capped by look-alikes.
"""

from __future__ import annotations

import json

import pytest

from caption_data import COLOURS, TEMPLATES, colour_rows, write_colour_files, write_table
from cmadapter.cli import main
from cmadapter.search.api import VideoIndex

pytestmark = pytest.mark.slow  # ~10 s: one training run, shared by the module's tests

TEST_COLOURS = ("yellow", "purple", "orange", "white", "black")
MOMENTS = {"red": (0, 2), "blue": (2, 4), "green": (4, 6)}


def table_rows() -> list[dict]:
    rows = []
    for row in colour_rows(per_colour=4, images=2):
        colour, index = row["video"].split("/")[-1].split(".")[0].split("-") if "-" in row["video"] else (None, None)
        if row["video"] == "long/shots.mp4":
            split = "test"
        elif row["video"].startswith("photos/"):
            split = "train"
        elif int(index) % 4 == 0:  # the first clip of each colour: held out
            split = "test" if colour in TEST_COLOURS else "val"
        else:
            split = "train"
        rows.append({**row, "split": split})
    return rows


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_weights):
    """The user's folder after `cmadapter train --captions ...`: (folder, run folder, train's metrics)."""
    root = tmp_path_factory.mktemp("own")
    rows = table_rows()
    write_colour_files(root / "videos", rows)
    write_table(root / "captions.csv", rows)
    args = ["train", "--captions", str(root / "captions.csv"), "--videos", str(root / "videos")]
    args += ["--pretrained", str(tiny_weights), "--name", "mine", "--no-progress"]
    # The tiny backbone's sizes and a budget that suits it; everything else is the captions recipe.
    args += [f"output_dir={root / 'runs'}", "data.max_frames=4", "data.workers=0", "train.batch_size=8"]
    args += ["train.epochs=12", "train.precision=fp32", "train.device=cpu", "optim.lr=1e-2"]
    args += ["optim.name=adamw", "optim.schedule=cosine", "model.method_options={r: 8, shared_dim: 16}"]
    assert main(args) == 0
    run = root / "runs" / "mine"
    return root, run, json.loads((run / "metrics.json").read_text())


def test_the_recipe_is_filled_in_and_the_run_folder_is_self_describing(trained, capsys):
    root, run, metrics = trained
    config = (run / "config.yaml").read_text()
    assert "dataset: captions" in config and str(root / "captions.csv") in config
    assert "lr: 0.01" in config and "warmup: 0.1" in config  # the recipe, with the overrides
    assert metrics["selection"].startswith("validation t2v R@1")
    assert metrics["test"]["t2v"]["queries"] == 5 * len(TEMPLATES) + 3  # two captions a clip, one a moment
    assert not (run / "splits.csv").exists()  # the table has a split column: nothing drawn


def test_the_adapter_beats_zero_shot_on_held_out_captions(trained, capsys):
    _root, run, metrics = trained
    capsys.readouterr()
    config = str(run / "config.yaml")
    assert main(["eval", "--config", config, "--adapter", str(run / "best.safetensors"), "--json"]) == 0
    adapter = json.loads(capsys.readouterr().out)
    assert main(["eval", "--config", config, "--json", "--no-progress"]) == 0
    zero = json.loads(capsys.readouterr().out)
    assert adapter["t2v"] == metrics["test"]["t2v"]  # eval of the run's config = the run's own test figures
    # Measured on an AMD EPYC (2 cores): adapter R@1 92.3 (85-100 over two seeds and 12 or 20 epochs),
    # zero-shot 15.4 (8 items, near chance). The margin asserted leaves room for other CPUs' kernels; a
    # broken pipeline (no learning, wrong moments) fails it.
    print(f"held-out t2v R@1: adapter {adapter['t2v']['R1']:.1f}, zero-shot {zero['t2v']['R1']:.1f}")
    assert adapter["t2v"]["R1"] >= zero["t2v"]["R1"] + 40, (adapter["t2v"], zero["t2v"])


def test_index_and_search_with_the_trained_adapter(trained, tiny_weights, capsys):
    root, run, _ = trained
    index = root / "index"
    held_out = [str(root / "videos" / "clips" / f"{c}-{4 * list(COLOURS).index(c)}.mp4") for c in TEST_COLOURS]
    args = ["index", *held_out, str(root / "videos" / "long"), "--out", str(index), "--pretrained", str(tiny_weights)]
    args += ["--adapter", f"mine={run / 'best.safetensors'}", "--zero-shot", "--window", "2", "--stride", "2"]
    assert main([*args, "--quiet"]) == 0
    capsys.readouterr()

    assert main(["search", str(index), "a purple video", "-k", "3", "--adapter", "mine", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["adapter"] == "mine" and len(found["results"]) == 3
    assert all({"video", "start", "end", "score"} <= set(r) for r in found["results"])

    hits = {"mine": 0, "zero-shot": 0}
    with VideoIndex.open(index) as opened:
        top = lambda query, adapter: opened.search(query, k=1, adapter=adapter).results[0].best
        for adapter in hits:
            for colour in TEST_COLOURS:
                own = f"/{colour}-{4 * list(COLOURS).index(colour)}.mp4"
                hits[adapter] += top(f"a {colour} video", adapter).video.endswith(own)
            for colour, window in MOMENTS.items():
                hit = top(f"a {colour} video", adapter)
                hits[adapter] += hit.video.endswith("long/shots.mp4") and (hit.start, hit.end) == window
    # Measured (AMD EPYC, 2 cores; training seeds 42 and 1, 12 and 20 epochs): 7-8 of 8 with the adapter,
    # 1 of 8 zero-shot. Score gaps between first and second are small on a tiny random backbone, so one
    # near-tie may go either way on another CPU: the margin asserted leaves room for it.
    print(f"search top-1 hits of 8: {hits}")
    assert hits["mine"] >= 6 and hits["mine"] >= hits["zero-shot"] + 4, hits
