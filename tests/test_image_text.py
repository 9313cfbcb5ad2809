"""Flickr30K and MSCOCO: Karpathy's split files, images as one-frame clips, `cmadapter eval` both directions."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from cmadapter.cli import main
from cmadapter.datasets import DATASETS, load_split, retrieval_split
from cmadapter.errors import DataError
from test_image import photo


def karpathy_image(filename: str, split: str, captions: list[str], **extra) -> dict:
    return {
        "filename": filename,
        "split": split,
        "sentences": [{"raw": c, "tokens": c.split()} for c in captions],
    } | extra


def write_karpathy(folder, name: str, images: list[dict]):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps({"images": images, "dataset": name}))
    return folder


def five(prefix: str, count: int = 5) -> list[str]:
    return [f"{prefix} caption {k}" for k in range(count)]


def test_flickr30k_splits_restval_joins_train_and_eval_keeps_five_captions(tmp_path):
    folder = write_karpathy(
        tmp_path,
        "dataset_flickr30k.json",
        [
            karpathy_image("1.jpg", "train", five("one")),
            karpathy_image("2.jpg", "restval", five("two")),
            karpathy_image("3.jpg", "val", five("three")),
            karpathy_image("4.jpg", "test", five("four", 7)),
            karpathy_image("5.jpg", "test", five("five")),
        ],
    )
    train = load_split("flickr30k", folder, "train")
    assert [r.video_id for r in train] == ["1.jpg"] * 5 + ["2.jpg"] * 5
    assert [r.video_id for r in load_split("flickr30k", folder, "train", restval=False)] == ["1.jpg"] * 5
    test = retrieval_split(load_split("flickr30k", folder, "test"), "flickr30k/test")
    assert test.video_ids == ["4.jpg", "5.jpg"] and test.caption_video == [0] * 5 + [1] * 5
    assert test.captions[:2] == ["four caption 0", "four caption 1"]
    assert len(load_split("flickr30k", folder, "test", eval_captions=None)) == 12
    assert [r.caption for r in load_split("flickr30k", folder, "val")] == five("three")
    assert DATASETS["flickr30k"].media == DATASETS["mscoco"].media == "image"
    assert DATASETS["msrvtt"].media == "video"


def test_mscoco_reads_dataset_coco_json(tmp_path):
    folder = write_karpathy(
        tmp_path,
        "dataset_coco.json",
        [
            karpathy_image("COCO_val2014_000000000001.jpg", "test", five("a"), filepath="val2014"),
            karpathy_image("COCO_train2014_000000000002.jpg", "train", five("b"), filepath="train2014"),
        ],
    )
    assert {r.video_id for r in load_split("mscoco", folder, "test")} == {"COCO_val2014_000000000001.jpg"}
    with pytest.raises(DataError, match="dataset_flickr30k.json"):
        load_split("flickr30k", folder, "test")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"filename": "x.jpg", "split": "dev", "sentences": [{"raw": "a"}]},
            r"images\[1\] \('x.jpg'\): 'split' must be",
        ),
        ({"split": "test", "sentences": [{"raw": "a"}]}, r"images\[1\]: 'filename' must be"),
        ({"filename": "x.jpg", "split": "test", "sentences": []}, r"images\[1\] \('x.jpg'\): 'sentences' must be"),
        ({"filename": "x.jpg", "split": "test", "sentences": [{"raw": " "}]}, r"images\[1\].*sentences\[0\] 'raw'"),
        ({"filename": "1.jpg", "split": "test", "sentences": [{"raw": "a"}]}, r"images\[1\].*repeats images\[0\]"),
    ],
)
def test_malformed_karpathy_entries_name_the_file_and_entry(tmp_path, entry, message):
    folder = write_karpathy(tmp_path, "dataset_flickr30k.json", [karpathy_image("1.jpg", "train", ["a"]), entry])
    with pytest.raises(DataError, match=r"dataset_flickr30k.json: " + message):
        load_split("flickr30k", folder, "test")


@pytest.mark.slow
def test_eval_on_a_karpathy_fixture_prints_both_directions_and_rsum(tmp_path, tiny_weights, capsys):
    images = tmp_path / "flickr30k-images"
    images.mkdir()
    entries = []
    for i in range(4):
        Image.fromarray(photo(10 + i, (40, 32))).save(images / f"{1000 + i}.jpg", quality=95)
        entries.append(karpathy_image(f"{1000 + i}.jpg", "test" if i else "train", five(f"picture {i}")))
    write_karpathy(tmp_path / "annotations", "dataset_flickr30k.json", entries)
    config = tmp_path / "f30k.yaml"
    config.write_text(
        f"""
name: f30k
output_dir: {tmp_path / "runs"}
model: {{backbone: null, pretrained: {tiny_weights}, method: null}}
data: {{dataset: flickr30k, annotations: {tmp_path / "annotations"}, videos: {tmp_path}, max_frames: 1, workers: 0}}
train: {{precision: fp32, device: cpu}}
"""
    )
    out = tmp_path / "metrics.json"
    assert main(["eval", "--config", str(config), "--no-progress", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "flickr30k/test" in printed and "t2i: R@1" in printed and "i2t: R@1" in printed and "rsum: " in printed
    results = json.loads(out.read_text())
    assert results["media"] == "image"
    t2i, i2t = results["test"]["t2v"], results["test"]["v2t"]
    assert t2i["queries"] == 15 and i2t["queries"] == 3  # every caption; every image once
    total = sum(results["test"][d][k] for d in ("t2v", "v2t") for k in ("R1", "R5", "R10"))
    assert results["test"]["rsum"] == pytest.approx(total)
    assert f"rsum: {total:.1f}" in printed
    capsys.readouterr()
    comparison = tmp_path / "comparison"
    assert main(["compare", "--config", str(config), "--methods", "zero-shot", "--out", str(comparison)]) == 0
    printed = capsys.readouterr().out  # `compare` prints the image table: T2I/I2T and rsum, as comparison.md
    assert "| T2I R@1 |" in printed and "| rsum |" in printed and "T2V" not in printed
    assert json.loads((comparison / "comparison.json").read_text())["media"] == "image"


def test_prepare_caches_the_images_and_skips_a_split_the_file_lacks(tmp_path, capsys):
    images = tmp_path / "flickr30k-images"
    images.mkdir()
    entries = []
    for i in range(3):
        Image.fromarray(photo(20 + i, (40, 32))).save(images / f"{i}.jpg")
        entries.append(karpathy_image(f"{i}.jpg", "test" if i else "train", five(f"picture {i}")))
    annotations = write_karpathy(tmp_path / "annotations", "dataset_flickr30k.json", entries)  # no val images
    cache = tmp_path / "cache"
    argv = ["prepare", "flickr30k", "--annotations", str(annotations), "--videos", str(tmp_path), "--out", str(cache)]
    assert main([*argv, "--short-side", "32", "--workers", "0"]) == 0
    assert "3 images decoded" in capsys.readouterr().out
    assert sorted(p.name for p in (cache / "frames").iterdir()) == ["0.jpg.npy", "1.jpg.npy", "2.jpg.npy"]
    assert main([*argv, "--splits", "val"]) != 0  # asked for by name: an empty split is an error
    assert "flickr30k/val: the annotation files" in capsys.readouterr().err
