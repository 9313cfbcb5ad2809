"""The retrieval-example pictures mark correct and wrong exactly as the metrics rank: read back from the PNG."""

import numpy as np
import pytest
import torch
from PIL import Image

from cmadapter.evaluation.metrics import text_to_video_ranks, video_to_text_ranks
from cmadapter.report.examples import Scored, choose
from cmadapter.report.figures import ExampleClips, draw_text_to_video, draw_video_to_text


def border_colour(png: np.ndarray, box) -> str:
    """The colour of a panel's border, sampled on its left and top edges' middles."""
    x0, y0, x1, y1 = box
    samples = [png[(y0 + y1) // 2, x0 + dx] for dx in (-1, 0, 1)] + [png[y0 + dy, (x0 + x1) // 2] for dy in (-1, 0, 1)]
    r, g, b = np.median(np.stack(samples)[:, :3].astype(int), axis=0)
    if g > r + 60 and g > b + 60:
        return "green"
    if r > g + 60 and r > b + 60:
        return "red"
    return f"other {r, g, b}"


@pytest.fixture
def setting():
    # 6 captions over 4 videos (videos 0 and 1 have two captions each). Row 1 ties its right video with a
    # wrong one: ties count against the model, so it must be drawn red although argmax would pick it.
    similarity = torch.tensor(
        [
            [9.0, 1.0, 0.0, 0.0],  # caption 0 -> video 0: right
            [5.0, 5.0, 1.0, 0.0],  # caption 1 -> video 1: tied with video 0, wrong
            [0.0, 1.0, 8.0, 2.0],  # caption 2 -> video 2: right
            [0.0, 0.0, 6.0, 3.0],  # caption 3 -> video 3: wrong
            [2.0, 7.0, 0.0, 0.0],  # caption 4 -> video 0: wrong
            [0.0, 3.0, 0.0, 0.0],  # caption 5 -> video 1: right
        ]
    )
    caption_video = [0, 1, 2, 3, 0, 1]
    run = Scored.from_similarity("run", similarity, caption_video)
    base = Scored.from_similarity("base", -similarity, caption_video)
    rng = np.random.default_rng(0)
    frames = {v: rng.integers(0, 255, (3, 16, 16, 3), dtype=np.uint8) for v in range(4)}
    masks = {v: np.array([True, True, v != 2]) for v in range(4)}
    captions = [f"caption {i}" for i in range(6)]
    weights = [{(c, v): np.full(int(masks[v].sum()), 1 / masks[v].sum()) for c in range(6) for v in range(4)}] * 2
    return similarity, caption_video, run, base, ExampleClips(frames, masks), captions, weights


def test_text_to_video_borders_follow_the_metric_ranks(setting, tmp_path):
    similarity, caption_video, run, base, clips, captions, weights = setting
    ranks = {"run": text_to_video_ranks(similarity, torch.tensor(caption_video))}
    ranks["base"] = text_to_video_ranks(-similarity, torch.tensor(caption_video))
    assert ranks["run"][1] == 2  # the tie is a miss
    panels = draw_text_to_video(tmp_path / "t2v.png", captions, range(6), [run, base], clips, weights)
    png = np.asarray(Image.open(tmp_path / "t2v.png").convert("RGB"))
    assert len(panels) == 12
    for panel in panels:
        expected = "green" if int(ranks[panel.model][panel.query]) == 1 else "red"
        assert border_colour(png, panel.box) == expected, panel
        assert panel.correct == (expected == "green")
        if expected == "red":
            assert panel.shown != caption_video[panel.query]
    assert {border_colour(png, p.box) for p in panels} == {"green", "red"}


def test_video_to_text_borders_follow_the_metric_ranks(setting, tmp_path):
    similarity, caption_video, run, base, clips, captions, weights = setting
    ranks = {"run": video_to_text_ranks(similarity, torch.tensor(caption_video))}
    ranks["base"] = video_to_text_ranks(-similarity, torch.tensor(caption_video))
    panels = draw_video_to_text(tmp_path / "v2t.png", captions, range(4), [run, base], clips, weights)
    png = np.asarray(Image.open(tmp_path / "v2t.png").convert("RGB"))
    for panel in panels:
        expected = "green" if int(ranks[panel.model][panel.query]) == 1 else "red"
        assert border_colour(png, panel.box) == expected, panel
        assert (caption_video[panel.shown] == panel.query) == (expected == "green")
    assert {border_colour(png, p.box) for p in panels} == {"green", "red"}


def test_examples_are_a_seeded_choice_preferring_run_right_baseline_wrong_then_both_wrong():
    run = np.array([1, 1, 1, 0, 0, 0, 1, 0], dtype=bool)
    base = np.array([0, 0, 1, 0, 0, 1, 1, 1], dtype=bool)
    chosen = choose(run, base, 4, seed=3)
    assert chosen == choose(run, base, 4, seed=3)
    assert set(chosen[:2]) <= {0, 1} and set(chosen[2:]) <= {3, 4}
    filled = choose(run, base, 7, seed=3)
    assert len(set(filled)) == 7 and set(filled[:4]) == {0, 1, 3, 4}
    assert set(filled[4:6]) == {2, 6}


def test_heatmaps_are_drawn_hot_where_each_map_is_hot_the_right_way_up(tmp_path):
    """Read the PNG back: each model's map lies over its own frame, hot where the map is hot, not transposed,
    flipped or on another frame (each frame's hot patch is in another place; one model mirrors the other)."""
    from cmadapter.report.plots import draw_heatmaps

    grid, size = 4, 64
    frames = np.full((3, size, size, 3), 128, dtype=np.uint8)  # grey: the overlay's colour alone shows
    hot = [(1, 3), (3, 1), (2, 2)]  # (row, column) per frame; not in row 0, under the weight's label
    maps = torch.zeros(3, grid, grid)
    for f, (r, c) in enumerate(hot):
        maps[f, r, c] = 1.0
    mirrored = maps.flip(-1)
    rows = [
        {
            "caption": "a red square",
            "frames": frames,
            "models": [("a", maps, [0.2, 0.3, 0.5]), ("b", mirrored, [1 / 3] * 3)],
        }
    ]
    panels = draw_heatmaps(tmp_path / "heatmaps.png", rows)
    png = np.asarray(Image.open(tmp_path / "heatmaps.png").convert("RGB")).astype(int)
    assert sorted((p.model, p.frame) for p in panels) == [(m, f) for m in "ab" for f in range(3)]
    for panel in panels:
        x0, y0, x1, y1 = panel.box
        assert 40 < x1 - x0 < 400 and abs((x1 - x0) - (y1 - y0)) <= 2, panel.box  # a square frame, drawn
        # Jet's hot end is red, its cold end blue: red minus blue at each patch's centre in the PNG.
        heat = np.array(
            [
                [np.subtract(*png[round(y0 + (r + 0.5) * (y1 - y0) / grid), round(x0 + (c + 0.5) * (x1 - x0) / grid)][[0, 2]])
                 for c in range(grid)]
                for r in range(grid)
            ]
        )  # fmt: skip
        expected = (maps if panel.model == "a" else mirrored)[panel.frame]
        assert np.unravel_index(heat.argmax(), heat.shape) == np.unravel_index(int(expected.argmax()), expected.shape)
        assert heat.max() > 40 and np.sort(heat.ravel())[-2] <= 0, heat  # one hot patch; the rest cold (or the label)
