"""Tiny annotation folders in each dataset's exact file format (as CLIP4Clip-style code distributes them)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path


def write_msrvtt(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    videos = [{"video_id": f"video{i}", "split": "train" if i < 4 else "test", "category": 3} for i in range(6)]
    sentences = []
    for i in range(6):
        for j in range(3 if i < 4 else 2):
            sentences.append({"caption": f"clip {i} caption {j}", "video_id": f"video{i}", "sen_id": len(sentences)})
    (folder / "MSRVTT_data.json").write_text(json.dumps({"info": {}, "videos": videos, "sentences": sentences}))
    (folder / "MSRVTT_train.9k.csv").write_text("video_id\nvideo0\nvideo1\nvideo2\nvideo3\n")
    (folder / "MSRVTT_train.7k.csv").write_text("video_id\nvideo1\nvideo3\n")
    (folder / "MSRVTT_JSFUSION_test.csv").write_text(
        ",key,vid_key,video_id,sentence\n"
        "0,ret0,msr4,video4,a man is singing\n"
        '1,ret1,msr5,video5,"a dog, running on grass"\n'
    )
    return folder


def write_msvd(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    captions = {
        "-4wsuPCjDBc_5_15": [["a", "man", "cooks"], ["someone", "is", "cooking"]],
        "abc_1_9": [["a", "cat", "plays"]],
        "xyz_0_4": [["two", "dogs"], ["dogs", "run"], ["animals", "running"]],
    }
    with open(folder / "raw-captions.pkl", "wb") as f:
        pickle.dump(captions, f)
    (folder / "train_list.txt").write_text("-4wsuPCjDBc_5_15\nabc_1_9\n")
    (folder / "val_list.txt").write_text("abc_1_9\n")
    (folder / "test_list.txt").write_text("xyz_0_4\n-4wsuPCjDBc_5_15\n")
    return folder


def write_vatex(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    train = [
        {"videoID": f"yt{i}_000010_000020", "enCap": [f"v{i} c{j}" for j in range(10)], "chCap": ["中"] * 10}
        for i in range(3)
    ]
    val = [
        {"videoID": f"val{i}_000001_000011", "enCap": [f"w{i} c{j}" for j in range(10)], "chCap": []} for i in range(2)
    ]
    (folder / "vatex_training_v1.0.json").write_text(json.dumps(train))
    (folder / "vatex_validation_v1.0.json").write_text(json.dumps(val))
    (folder / "train_list.txt").write_text("yt0_000010_000020\nyt2_000010_000020\n")
    (folder / "val_list.txt").write_text("val0_000001_000011\n")
    (folder / "test_list.txt").write_text("val1_000001_000011\nyt1_000010_000020\n")
    return folder


def write_didemo(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    entries = [
        {
            "video": "1234@N00_111_aaa.mov",
            "description": "a man enters.",
            "times": [[0, 0], [0, 1]],
            "annotation_id": 1,
        },
        {"video": "5678@N01_222_bbb.avi", "description": "the dog jumps", "times": [[2, 3]], "annotation_id": 2},
        {"video": "1234@N00_111_aaa.mov", "description": "he sits down", "times": [[4, 5]], "annotation_id": 3},
    ]
    (folder / "test_data.json").write_text(json.dumps(entries))
    (folder / "train_data.json").write_text(json.dumps(entries[1:2]))
    return folder


def write_activitynet(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    val = {
        "v_abc": {
            "duration": 82.7,
            "timestamps": [[0, 20.1], [20.1, 82.7]],
            "sentences": [" A man talks.", " He waves. "],
        },
        "v_-def": {"duration": 12.0, "timestamps": [[0, 12]], "sentences": ["Kids play."]},
    }
    train = {"v_ghi": {"duration": 30.0, "timestamps": [[0, 30]], "sentences": ["Someone paints a wall."]}}
    (folder / "val_1.json").write_text(json.dumps(val))
    (folder / "train.json").write_text(json.dumps(train))
    return folder


def tiny_msrvtt_run(root: Path, weights: Path) -> tuple[Path, Path]:
    """An MSR-VTT folder with real tiny videos and a run config for the tiny backbone; (config, videos)."""
    from media import write_video

    annotations = write_msrvtt(root / "msrvtt")
    videos = root / "videos"
    videos.mkdir()
    for i in range(6):
        write_video(videos / f"video{i}.mp4", frames=12, rate=4, size=(48, 40), marker=i % 2 == 1)
    config = root / "tiny.yaml"
    config.write_text(
        f"""
name: tiny
output_dir: {root / "runs"}
model: {{backbone: null, pretrained: {weights}, method_options: {{r: 4, shared_dim: 8}}}}
data: {{dataset: msrvtt, annotations: {annotations}, videos: {videos}, fps: 2.0, max_frames: 4, workers: 0}}
train: {{batch_size: 4, epochs: 1, precision: fp32, device: cpu}}
"""
    )
    return config, videos
