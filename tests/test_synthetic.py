"""The synthetic dataset: deterministic, in the exact MSR-VTT layout, real H.264 files, truthful captions."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from pathlib import Path

import av
import numpy as np
import pytest

from cmadapter.demo.dataset_files import generate_dataset
from cmadapter.demo.synthetic import (
    COLOURS,
    SHAPES,
    STILL_TEMPLATES,
    SyntheticConfig,
    appearance_caption,
    object_frames,
    object_phrase,
    render_video,
    sample_frames,
    shape_mask,
    video_specs,
)
from cmadapter.errors import CmadapterError

# Small but complete: both splits, paraphrases, two frames per object, 32-px frames.
SMALL = SyntheticConfig(
    num_train=6, num_test=5, captions_per_train_video=3, frame_size=32, fps=4, seconds_per_object=0.5, seed=3
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("synthetic") / "a", SMALL, progress=False)


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def decode(path: Path) -> tuple[list[np.ndarray], av.VideoStream]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    return frames, stream


def test_same_seed_gives_byte_identical_files(dataset, tmp_path):
    again = generate_dataset(tmp_path / "b", SMALL, progress=False)
    first, second = files_of(dataset.root), files_of(again.root)
    assert len(first) == SMALL.num_videos + 5  # videos, three annotation files, the captions table, the stamp
    assert first.keys() == second.keys()
    assert [name for name in first if first[name] != second[name]] == []


def test_different_seed_gives_different_content_and_frames(dataset, tmp_path):
    other = generate_dataset(tmp_path / "c", dataclasses.replace(SMALL, seed=4), progress=False)
    assert [v.objects for v in other.videos] != [v.objects for v in dataset.videos]
    ours, theirs = files_of(dataset.annotations), files_of(other.annotations)
    assert ours["MSRVTT_data.json"] != theirs["MSRVTT_data.json"]
    a, _ = decode(dataset.video_path("video0"))
    b, _ = decode(other.video_path("video0"))
    assert not np.array_equal(np.stack(a), np.stack(b))


def test_annotations_parse_as_msrvtt(dataset):
    folder = dataset.annotations
    data = json.loads((folder / "MSRVTT_data.json").read_text())
    assert set(data) == {"info", "videos", "sentences"}
    videos = {v["video_id"]: v for v in data["videos"]}
    assert list(videos) == [f"video{i}" for i in range(SMALL.num_videos)]
    assert [v["id"] for v in data["videos"]] == list(range(SMALL.num_videos))
    train_ids = [k for k, v in videos.items() if v["split"] == "train"]
    test_ids = [k for k, v in videos.items() if v["split"] == "test"]
    assert len(train_ids) == SMALL.num_train and len(test_ids) == SMALL.num_test
    assert {v["split"] for v in videos.values()} == {"train", "test"}

    captions: dict[str, list[str]] = {}
    for sentence in data["sentences"]:
        assert set(sentence) == {"caption", "video_id", "sen_id"}
        captions.setdefault(sentence["video_id"], []).append(sentence["caption"])
    assert [s["sen_id"] for s in data["sentences"]] == list(range(len(data["sentences"])))
    assert all(len(captions[v]) == SMALL.captions_per_train_video for v in train_ids)
    assert all(len(set(captions[v])) == len(captions[v]) for v in train_ids)  # paraphrases, not copies
    assert all(len(captions[v]) == 1 for v in test_ids)

    lines = (folder / "MSRVTT_train.9k.csv").read_text().splitlines()
    assert lines[0] == "video_id"
    assert lines[1:] == train_ids

    text = (folder / "MSRVTT_JSFUSION_test.csv").read_text()
    lines = text.splitlines()
    assert lines[0] == ",key,vid_key,video_id,sentence"
    rows = list(csv.reader(text.splitlines()[1:]))
    # Every row is five plain fields: a reader that splits on commas agrees with one that honours quotes.
    assert rows == [line.split(",") for line in lines[1:]]
    assert [r[0] for r in rows] == [str(i) for i in range(SMALL.num_test)]
    assert [r[1] for r in rows] == [f"ret{i}" for i in range(SMALL.num_test)]
    assert all(re.fullmatch(r"msr\d+", r[2]) for r in rows)
    assert [r[3] for r in rows] == test_ids
    assert [r[4] for r in rows] == [captions[v][0] for v in test_ids]


def test_the_captions_table_holds_the_same_data(dataset):
    from cmadapter.datasets import load_split

    table = dataset.root / "captions.csv"
    assert table.read_text().splitlines()[:2] == [
        "video,caption,split",
        f"video0.mp4,{dataset.videos[0].captions[0]},train",
    ]
    for split in ("train", "test"):
        rows = load_split("captions", table, split)
        msrvtt = load_split("msrvtt", dataset.annotations, split)
        assert [(r.video_id, r.caption) for r in rows] == [(f"{r.video_id}.mp4", r.caption) for r in msrvtt]
        assert all((dataset.video_dir / r.video_id).is_file() for r in rows)
    table.unlink()  # a folder generated before the table existed gets it on reuse
    generate_dataset(dataset.root, SMALL, progress=False)
    assert table.is_file()


def test_videos_decode_to_the_expected_frames(dataset):
    for spec in dataset.videos:
        frames, stream = decode(dataset.video_path(spec.video_id))
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert stream.average_rate == SMALL.fps
        assert len(frames) == SMALL.frames_per_video == 6
        assert frames[0].shape == (SMALL.frame_size, SMALL.frame_size, 3)
        # Lossy, but close to what was rendered: the colours survive compression.
        error = np.abs(np.stack(frames).astype(int) - render_video(spec, SMALL).astype(int)).mean()
        assert error < 6, (spec.video_id, error)


def colour_coverage(frame: np.ndarray, colour: str) -> int:
    """Pixels within reach of a palette colour (decoded H.264 shifts colours a little)."""
    distance = np.abs(frame.astype(int) - np.asarray(COLOURS[colour])).sum(-1)
    return int((distance < 60).sum())


def test_each_segment_shows_its_object_and_only_it(dataset):
    size = SMALL.frame_size
    for spec in dataset.videos:
        frames, _ = decode(dataset.video_path(spec.video_id))
        for k, (colour, _) in enumerate(spec.objects):
            for frame in frames[k * SMALL.frames_per_object : (k + 1) * SMALL.frames_per_object]:
                assert colour_coverage(frame, colour) > 0.05 * size * size, (spec.video_id, k, colour)
                # No frame shows the video's other objects: the set needs several frames.
                for other, _ in spec.objects:
                    if other != colour:
                        assert colour_coverage(frame, other) < 0.01 * size * size, (spec.video_id, k, other)


def test_captions_name_exactly_the_objects_shown():
    config = dataclasses.replace(SMALL, num_train=40, num_test=20, captions_per_train_video=5)
    phrases = {o: object_phrase(o) for o in config.objects}
    for spec in video_specs(config):
        for text in spec.captions:
            named = {o for o, p in phrases.items() if re.search(rf"\b{p}\b", text)}
            assert named == set(spec.objects), (text, spec.objects)
            assert "," not in text


def test_still_frames_show_what_their_objects_say():
    size = SMALL.frame_size
    counts = set()
    for frame, objects in object_frames(SMALL, 40, max_objects=2):
        counts.add(len(objects))
        assert len(set(objects)) == len(objects)
        for colour in {c for c, _ in objects}:
            assert colour_coverage(frame, colour) > 0.03 * size * size, (objects, colour)
        for colour in set(SMALL.colours) - {c for c, _ in objects}:
            assert colour_coverage(frame, colour) < 0.01 * size * size, (objects, colour)
    assert counts == {1, 2}
    assert {len(o) for _, o in object_frames(SMALL, 20)} == {1}  # the default: one object, as in videos
    first = [f for f, _ in object_frames(SMALL, 5, offset=3)]
    again = [f for f, _ in object_frames(SMALL, 2, offset=6)]
    assert all(np.array_equal(a, b) for a, b in zip(first[3:], again))  # frame i is the same whatever the batch


def test_appearance_captions_list_the_objects():
    objects = (("red", "square"), ("orange", "ring"))
    assert appearance_caption(objects[:1]) == "a red square"
    assert appearance_caption(objects) == "a red square and an orange ring"
    for template in STILL_TEMPLATES:
        text = appearance_caption(objects, template)
        assert "a red square and an orange ring" in text and "," not in text


def test_no_two_videos_share_a_content_set():
    config = SyntheticConfig(num_train=300, num_test=100, seed=1)
    specs = video_specs(config)
    contents = [s.content for s in specs]
    assert len(set(contents)) == len(contents)
    assert all(len(s.objects) == config.objects_per_video == len(s.content) for s in specs)
    # Rich enough that chance retrieval is low: many objects in use, each in few videos.
    used = {o for s in specs for o in s.objects}
    assert len(used) == len(config.objects)


def test_the_set_of_sampled_frames_holds_the_content():
    config = SyntheticConfig(num_train=3, num_test=2)
    picked = sample_frames(config)
    assert [i // config.frames_per_object for i in picked] == list(range(config.objects_per_video))
    assert sample_frames(config, num_frames=2) == [picked[0], picked[-1]]


def test_shapes_are_distinguishable():
    masks = {s: shape_mask(s, 64, 32, 32, 15) > 0.5 for s in SHAPES}
    for a in SHAPES:
        assert masks[a].sum() > 100, a
        for b in SHAPES:
            if a < b:
                iou = (masks[a] & masks[b]).sum() / (masks[a] | masks[b]).sum()
                assert iou < 0.85, (a, b, iou)


def test_an_existing_dataset_is_reused_and_a_different_one_refused(dataset):
    video = dataset.video_path("video0")
    before = video.stat().st_mtime_ns
    assert generate_dataset(dataset.root, SMALL, progress=False).videos == dataset.videos
    assert video.stat().st_mtime_ns == before
    with pytest.raises(CmadapterError, match="other settings"):
        generate_dataset(dataset.root, dataclasses.replace(SMALL, seed=9), progress=False)


def test_overwrite_regenerates(tmp_path):
    first = generate_dataset(tmp_path, SMALL, progress=False)
    changed = dataclasses.replace(SMALL, seed=9)
    (tmp_path / "notes.txt").write_text("mine")
    second = generate_dataset(tmp_path, dataclasses.replace(changed, num_train=3), overwrite=True, progress=False)
    assert second.videos != first.videos
    # Stale videos of the larger first run are gone; files it did not write are not.
    assert sorted(p.stem for p in second.video_dir.iterdir()) == sorted(v.video_id for v in second.videos)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert json.loads((tmp_path / "synthetic.json").read_text())["config"]["seed"] == 9


@pytest.mark.parametrize(
    "change",
    [
        {"frame_size": 30},
        {"objects_per_video": 1},
        {"colours": ("red", "mauve")},
        {"colours": ("red", "blue"), "shapes": ("square",), "num_train": 3},
        {"captions_per_train_video": 0},
    ],
)
def test_invalid_configs_are_refused(change):
    with pytest.raises(CmadapterError):
        dataclasses.replace(SMALL, **change)


def test_quick_preset_is_smaller():
    quick, default = SyntheticConfig.quick(), SyntheticConfig()
    assert quick.num_videos < default.num_videos
    assert quick.objects_per_video == default.objects_per_video
