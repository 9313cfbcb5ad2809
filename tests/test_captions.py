"""Captions tables: the four formats, columns by name, moments, the split column or the seeded split by video,
and every kind of bad input as a one-line error naming the file and line (exit code 2, nothing written)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from caption_data import write_table
from cmadapter.cli import main
from cmadapter.datasets import load_split, retrieval_split
from cmadapter.datasets.splits import seeded_split
from cmadapter.errors import DataError
from cmadapter.video.sources import VideoPaths

ROWS = [
    {"video": "a.mp4", "caption": "a red ball", "start": None, "end": None, "split": "train"},
    {"video": "a.mp4", "caption": "a ball that is red", "start": None, "end": None, "split": "train"},
    {"video": "sub/b.mp4", "caption": "a dog runs", "start": 1.5, "end": 4.0, "split": "test"},
    {"video": "sub/b.mp4", "caption": "a cat sleeps", "start": 4.0, "end": None, "split": "test"},
    {"video": "c.jpg", "caption": "a photo of a tree", "start": None, "end": None, "split": "val"},
]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_every_format_gives_the_same_records(tmp_path, suffix):
    table = write_table(tmp_path / f"captions{suffix}", ROWS)
    train = load_split("captions", table, "train")
    assert [(r.video_id, r.caption, r.window) for r in train] == [
        ("a.mp4", "a red ball", (None, None)),
        ("a.mp4", "a ball that is red", (None, None)),
    ]
    test = load_split("captions", table, "test")
    assert [(r.video_id, r.window) for r in test] == [("sub/b.mp4", (1.5, 4.0)), ("sub/b.mp4", (4.0, None))]
    assert [r.line for r in test] == ([4, 5] if suffix in (".csv", ".tsv") else [3, 4])  # below a header line
    assert [r.video_id for r in load_split("captions", table, "val")] == ["c.jpg"]


def test_columns_are_named_by_option_and_paths_are_normalised(tmp_path):
    rows = [{"filepath": "./x/../a.mp4", "title": " waves "}, {"filepath": "/abs/b.mp4", "title": "sand"}]
    table = write_table(tmp_path / "t.csv", rows)
    records = load_split(
        "captions", table, "train", columns={"video": "filepath", "caption": "title"}, test_fraction=0, val_fraction=0
    )
    assert [(r.video_id, r.caption) for r in records] == [("a.mp4", "waves"), ("/abs/b.mp4", "sand")]
    with pytest.raises(DataError, match=r"columns: 'vid' is not one of ours"):
        load_split("captions", table, "train", columns={"vid": "filepath"})


def test_moments_of_one_video_are_items_of_their_own(tmp_path):
    table = write_table(tmp_path / "t.csv", ROWS)
    split = retrieval_split(load_split("captions", table, "test"), "captions/test", moments=True)
    assert split.video_ids == ["sub/b.mp4@1.5-4", "sub/b.mp4@4-"]
    assert split.files == {"sub/b.mp4@1.5-4": "sub/b.mp4", "sub/b.mp4@4-": "sub/b.mp4"}
    assert split.windows["sub/b.mp4@4-"] == (4.0, None) and split.caption_video == [0, 1]
    with pytest.raises(DataError, match="two time windows"):  # the benchmarks' rule is unchanged
        retrieval_split(load_split("captions", table, "test"), "captions/test")


def test_the_seeded_split_is_by_video_and_ignores_row_order(tmp_path):
    videos = [f"v{i:02d}.mp4" for i in range(40)]
    split = seeded_split(videos, val_fraction=0.1, test_fraction=0.2, seed=3)
    assert sorted(split.values()).count("val") == 4 and list(split.values()).count("test") == 8
    assert seeded_split(reversed(videos), val_fraction=0.1, test_fraction=0.2, seed=3) == split
    assert seeded_split(videos, val_fraction=0.1, test_fraction=0.2, seed=4) != split
    rows = [{"video": v, "caption": f"caption {k} of {v}"} for v in videos for k in range(3)]
    table = write_table(tmp_path / "t.jsonl", rows)
    by_split = {s: load_split("captions", table, s, test_fraction=0.2, split_seed=3) for s in ("train", "val", "test")}
    assert {s: len(r) for s, r in by_split.items()} == {"train": 84, "val": 12, "test": 24}
    for name, records in by_split.items():
        assert {r.video_id for r in records} == {v for v, s in split.items() if s == name}  # whole videos
    assert min(seeded_split(videos[:3], val_fraction=0.1, test_fraction=0.1, seed=0).values()) == "test"
    with pytest.raises(DataError, match="too few to hold out"):
        seeded_split(videos[:2], val_fraction=0.1, test_fraction=0.1, seed=0)


def test_a_video_paths_source_names_what_is_missing(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.mp4").write_bytes(b"x")
    source = VideoPaths(tmp_path)
    assert source.missing(["sub/b.mp4", "a.mp4", str(tmp_path / "sub" / "b.mp4")]) == {
        "a.mp4": f"no file {tmp_path / 'a.mp4'}"
    }


# ---- bad input: one line naming file and line, exit code 2, nothing written -----------------------------------


def bad_tables(tmp_path: Path) -> list[tuple[Path, str]]:
    good = "video,caption,split\na.mp4,a red ball,train\nb.mp4,a dog,train\n"
    cases = {
        "header.csv": (
            "a.mp4,a red ball\nb.mp4,a dog\n",
            r"header\.csv line 1: no column 'video', 'caption' \(columns found: 'a\.mp4', 'a red ball'\)",
        ),
        "columns.csv": (
            "path,text\na.mp4,x\n",
            r"columns\.csv line 1: no column 'video', 'caption' \(columns found: 'path', 'text'\)",
        ),
        "empty.csv": (good + "a.mp4,  ,train\n", r"empty\.csv line 4: empty caption"),
        "missing.csv": (good + "c.mp4,a cat,train\n", r"missing\.csv line 4: no file .*c\.mp4.*missing='drop'"),
        "order.csv": ("video,caption,start,end\na.mp4,x,5,3\n", r"order\.csv line 2: start 5 is not before end 3"),
        "nan.csv": ("video,caption,start,end\na.mp4,x,nan,3\n", r"nan\.csv line 2: start must be a finite number"),
        "split.csv": (good + "b.mp4,a dog,dev\n", r"split\.csv line 4: split 'dev' is not one of train, val, test"),
        "leak.csv": (
            good + "b.mp4,a dog,test\n",
            r"leak\.csv line 4: video 'b\.mp4' is in split 'test' here and in 'train' at line 3",
        ),
        "latin1.csv": (None, r"latin1\.csv line 4: not UTF-8 text"),
        "norows.csv": ("video,caption\n", r"norows\.csv: the table has no rows"),
        "novalrows.csv": (
            "video,caption,split\na.mp4,x,train\nb.mp4,y,test\n",
            r"novalrows\.csv: no rows in split 'val' .*val_split=null",
        ),
        "nan.jsonl": (
            '{"video": "a.mp4", "caption": "x", "end": NaN}\n',
            r"nan\.jsonl line 1: end must be a finite number",
        ),
        "fields.csv": (good + "c.mp4,x,train,extra\n", r"fields\.csv line 4: 4 fields, the header has 3"),
    }
    out = []
    for name, (text, pattern) in cases.items():
        path = tmp_path / name
        if text is None:
            path.write_bytes(good.encode() + "b.mp4,caf\u00e9,train\n".encode("latin-1"))
        else:
            path.write_text(text)
        out.append((path, pattern))
    return out


def test_bad_tables_are_one_line_errors_with_file_and_line(tmp_path, tiny_weights, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a.mp4", "b.mp4"):  # found by path; never decoded, every case fails before
        (videos / name).write_bytes(b"x")
    runs = tmp_path / "runs"
    for table, pattern in bad_tables(tmp_path):
        args = ["train", "--captions", str(table), "--videos", str(videos), "--pretrained", str(tiny_weights)]
        args += ["--no-progress", f"output_dir={runs}", "train.batch_size=1", "train.device=cpu"]
        assert main(args) == 2, table.name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert re.search(pattern, err), (table.name, err)
        assert not runs.exists(), table.name  # nothing written


def test_missing_videos_are_dropped_when_asked_and_counted(tmp_path, caplog):
    from cmadapter.datasets.clips import CaptionVideoPairs

    (tmp_path / "a.mp4").write_bytes(b"x")
    table = write_table(tmp_path / "t.csv", [{"video": "a.mp4", "caption": "x"}, {"video": "gone.mp4", "caption": "y"}])
    records = load_split("captions", table, "train", val_fraction=0, test_fraction=0)
    pairs = CaptionVideoPairs(records, VideoPaths(tmp_path), lambda t: t, 32, missing="drop", annotations=str(table))
    assert [r.video_id for r in pairs.records] == ["a.mp4"]
    assert any("dropping 1 of 2 videos" in r.getMessage() and "t.csv line 3" in r.getMessage() for r in caplog.records)


def test_a_drawn_split_is_kept_with_the_run_for_eval_and_resume(tmp_path, tiny_weights, capsys):
    from caption_data import colour_rows, write_colour_files

    rows = colour_rows(per_colour=2, long_video=False)  # 16 videos, 2 captions each, no split column
    write_colour_files(tmp_path / "videos", rows)
    table = write_table(tmp_path / "captions.csv", rows)
    options = ["train", "--captions", str(table), "--videos", str(tmp_path / "videos")]
    options += ["--pretrained", str(tiny_weights), "--name", "s", "--no-progress"]
    overrides = [f"output_dir={tmp_path / 'runs'}", "data.max_frames=2", "data.workers=0", "data.val_split=null"]
    overrides += ["train.batch_size=4", "train.save_every_steps=1", "train.precision=fp32", "train.device=cpu"]
    assert main([*options, *overrides, "train.max_steps=2"]) == 0
    run = tmp_path / "runs" / "s"
    kept = (run / "splits.csv").read_text().splitlines()
    assert kept[0] == "video,split" and len(kept) == 17
    held_out = sorted(line.split(",")[0] for line in kept if line.endswith(",test"))
    assert len(held_out) == 2 and f"split_file: {run / 'splits.csv'}" in (run / "config.yaml").read_text()

    # The table grows; the run's config still evaluates the split it was trained with.
    clip = (tmp_path / "videos" / rows[0]["video"]).read_bytes()
    more = [{"video": f"clips/new-{i}.mp4", "caption": f"new {i}"} for i in range(30)]
    for row in more:
        (tmp_path / "videos" / row["video"]).write_bytes(clip)
    write_table(table, rows + more)
    capsys.readouterr()
    assert main(["eval", "--config", str(run / "config.yaml"), "--json", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["t2v"]["queries"] == 2 * len(held_out)

    # Resuming with the same command reads the kept split: the config matches the saved state's.
    assert main([*options, "--resume", *overrides, "train.max_steps=3"]) == 0
    assert json.loads((run / "metrics.json").read_text())["global_step"] == 3
    assert (run / "config.resume-1.yaml").read_text().count("splits.csv") == 1


def test_the_shortcut_fills_the_packaged_recipe_which_is_configs_captions_vitb32():
    from cmadapter.cli.run_commands import CAPTIONS_RECIPE
    from cmadapter.config import load_config

    configs = Path(__file__).resolve().parents[1] / "configs"
    assert CAPTIONS_RECIPE.read_text() == (configs / "captions_vitb32.yaml").read_text()
    b32, b16 = load_config(configs / "captions_vitb32.yaml"), load_config(configs / "captions_vitb16.yaml")
    assert (b32.model.backbone, b16.model.backbone) == ("ViT-B-32-quickgelu", "ViT-B-16-quickgelu")
    b16.model.backbone, b16.name = b32.model.backbone, b32.name
    assert b16 == b32 and b32.data.dataset == "captions" and b32.data.val_split == "val"
