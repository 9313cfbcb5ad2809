"""Dataset readers on tiny annotation files written in each dataset's exact format, and the video lookup."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from annotation_files import write_activitynet, write_didemo, write_msrvtt, write_msvd, write_vatex
from cmadapter.datasets import DATASETS, Record, load_split, retrieval_split
from cmadapter.datasets.activitynet import file_aliases
from cmadapter.errors import CmadapterError, DataError
from cmadapter.video.lookup import find_videos

# ---- record counts and caption <-> video pairing ------------------------------------------------------------


def pairs(records: list[Record]) -> list[tuple[str, str]]:
    return [(r.video_id, r.caption) for r in records]


def test_msrvtt_train_has_every_caption_of_each_listed_video(tmp_path):
    folder = write_msrvtt(tmp_path)
    records = load_split("msrvtt", folder, "train")
    assert len(records) == 12 and {r.split for r in records} == {"train"}
    assert pairs(records)[:4] == [(f"video{i // 3}", f"clip {i // 3} caption {i % 3}") for i in range(4)]
    assert all(r.caption.startswith(f"clip {r.video_id[5:]} ") for r in records)
    seven = load_split("msrvtt", folder, "train", train_list="7k")
    assert {r.video_id for r in seven} == {"video1", "video3"} and len(seven) == 6


def test_msrvtt_test_is_one_caption_per_video_from_the_jsfusion_csv(tmp_path):
    records = load_split("msrvtt", write_msrvtt(tmp_path), "test")
    assert pairs(records) == [("video4", "a man is singing"), ("video5", "a dog, running on grass")]
    split = retrieval_split(records, "msrvtt/test")
    assert split.video_ids == ["video4", "video5"] and split.caption_video == [0, 1]
    assert split.windows == {"video4": (None, None), "video5": (None, None)}


def test_a_repeated_msrvtt_test_video_is_an_error_naming_both_lines(tmp_path):
    folder = write_msrvtt(tmp_path)
    csv = folder / "MSRVTT_JSFUSION_test.csv"
    csv.write_text(csv.read_text() + "2,ret2,msr4,video4,a man is singing\n")
    with pytest.raises(DataError, match=r"MSRVTT_JSFUSION_test.csv line 4: video 'video4' repeats line 2"):
        load_split("msrvtt", folder, "test")


@pytest.mark.parametrize(
    ("dataset", "write", "name", "split"),
    [
        ("msrvtt", write_msrvtt, "MSRVTT_JSFUSION_test.csv", "test"),
        ("didemo", write_didemo, "test_list.txt", "test"),
        ("vatex", write_vatex, "vatex_validation_v1.0.json", "val"),
    ],
)
def test_a_directory_in_place_of_an_annotation_file_is_an_error_naming_it(tmp_path, dataset, write, name, split):
    folder = write(tmp_path / dataset)
    (folder / name).unlink(missing_ok=True)  # DiDeMo's list is optional: a directory must not pass for absent
    (folder / name).mkdir()
    with pytest.raises(DataError, match=f"{folder / name} is a directory; expected an annotation file") as caught:
        load_split(dataset, folder, split)
    assert type(caught.value).__name__ == "DataError"  # not "missing", which prepare would skip


def test_msvd_splits_are_multi_caption(tmp_path):
    folder = write_msvd(tmp_path)
    train = load_split("msvd", folder, "train")
    assert pairs(train) == [
        ("-4wsuPCjDBc_5_15", "a man cooks"),
        ("-4wsuPCjDBc_5_15", "someone is cooking"),
        ("abc_1_9", "a cat plays"),
    ]
    assert len(load_split("msvd", folder, "val")) == 1
    test = retrieval_split(load_split("msvd", folder, "test"), "msvd/test")
    assert test.video_ids == ["xyz_0_4", "-4wsuPCjDBc_5_15"]
    assert test.captions == ["two dogs", "dogs run", "animals running", "a man cooks", "someone is cooking"]
    assert test.caption_video == [0, 0, 0, 1, 1]


def test_vatex_reads_ten_english_captions_per_video_from_both_files(tmp_path):
    folder = write_vatex(tmp_path)
    train = load_split("vatex", folder, "train")
    assert len(train) == 20 and [r.video_id for r in train[::10]] == ["yt0_000010_000020", "yt2_000010_000020"]
    assert train[13].caption == "v2 c3"
    test = retrieval_split(load_split("vatex", folder, "test"), "vatex/test")
    assert test.video_ids == ["val1_000001_000011", "yt1_000010_000020"]
    assert test.caption_video == [0] * 10 + [1] * 10 and test.captions[10] == "v1 c0"
    assert len(load_split("vatex", folder, "val")) == 10


def test_didemo_joins_a_videos_descriptions_into_a_paragraph(tmp_path):
    folder = write_didemo(tmp_path)
    records = load_split("didemo", folder, "test")
    assert pairs(records) == [
        ("1234@N00_111_aaa.mov", "a man enters. he sits down"),
        ("5678@N01_222_bbb.avi", "the dog jumps"),
    ]
    assert records[0].window == (0.0, 30.0)
    (folder / "test_list.txt").write_text("5678@N01_222_bbb.avi\n")
    assert [r.video_id for r in load_split("didemo", folder, "test")] == ["5678@N01_222_bbb.avi"]


def test_activitynet_paragraphs_and_the_val_1_test_split(tmp_path):
    folder = write_activitynet(tmp_path)
    test = load_split("activitynet", folder, "test")
    assert pairs(test) == [("v_abc", "A man talks. He waves."), ("v_-def", "Kids play.")]
    assert test[0].window == (None, None)
    assert pairs(load_split("activitynet", folder, "val_1")) == pairs(test)
    assert pairs(load_split("activitynet", folder, "train")) == [("v_ghi", "Someone paints a wall.")]
    (folder / "val_ids.json").write_text(json.dumps(["v_-def"]))
    assert [r.video_id for r in load_split("activitynet", folder, "val_1")] == ["v_-def"]


def test_every_dataset_is_registered_with_its_splits():
    benchmarks = {"msrvtt", "msvd", "vatex", "didemo", "activitynet", "flickr30k", "mscoco"}
    assert set(DATASETS) == benchmarks | {"captions", "webdataset"}  # and your own data
    assert DATASETS["msrvtt"].options == ["train_list"]


# ---- malformed files ----------------------------------------------------------------------------------------


def test_malformed_msrvtt_entries_name_the_file_and_entry(tmp_path):
    folder = write_msrvtt(tmp_path)
    data = json.loads((folder / "MSRVTT_data.json").read_text())
    data["sentences"][7] = {"video_id": "video2", "sen_id": 7}
    (folder / "MSRVTT_data.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"MSRVTT_data\.json: sentences\[7\] 'caption'"):
        load_split("msrvtt", folder, "train")
    (folder / "MSRVTT_JSFUSION_test.csv").write_text(
        ",key,vid_key,video_id,sentence\n0,ret0,msr4,video4,ok\n1,ret1,msr5,video5,\n"
    )
    with pytest.raises(DataError, match=r"MSRVTT_JSFUSION_test\.csv line 3: empty sentence"):
        load_split("msrvtt", folder, "test")
    (folder / "MSRVTT_train.9k.csv").write_text("video_id\nvideo0\nvideo9\n")
    (folder / "MSRVTT_data.json").write_text(json.dumps({"sentences": [{"video_id": "video0", "caption": "x"}]}))
    with pytest.raises(DataError, match=r"MSRVTT_train\.9k\.csv line 3: video 'video9' has no caption"):
        load_split("msrvtt", folder, "train")
    (folder / "MSRVTT_data.json").write_text('{"sentences": [')
    with pytest.raises(DataError, match=r"MSRVTT_data\.json: not valid JSON at line 1"):
        load_split("msrvtt", folder, "train")


def test_malformed_entries_of_the_other_datasets_name_the_file_and_entry(tmp_path):
    msvd = write_msvd(tmp_path / "msvd")
    (msvd / "test_list.txt").write_text("xyz_0_4\nnot_there\n")
    with pytest.raises(DataError, match=r"test_list\.txt: video 'not_there' \(entry 2\) has no captions"):
        load_split("msvd", msvd, "test")

    vatex = write_vatex(tmp_path / "vatex")
    data = json.loads((vatex / "vatex_training_v1.0.json").read_text())
    data[1]["enCap"][4] = ""
    (vatex / "vatex_training_v1.0.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"vatex_training_v1\.0\.json: entry 1 \('yt1_000010_000020'\) enCap\[4\]"):
        load_split("vatex", vatex, "train")

    didemo = write_didemo(tmp_path / "didemo")
    (didemo / "test_data.json").write_text(json.dumps([{"video": "a.mp4", "description": "x"}, {"description": "y"}]))
    with pytest.raises(DataError, match=r"test_data\.json: entry 1: expected an object with a 'video' string"):
        load_split("didemo", didemo, "test")

    anet = write_activitynet(tmp_path / "anet")
    (anet / "train.json").write_text(json.dumps({"v_x": {"duration": 3, "sentences": []}}))
    with pytest.raises(DataError, match=r"train\.json: 'v_x': expected an object with a non-empty 'sentences'"):
        load_split("activitynet", anet, "train")

    (msvd / "train_list.txt").write_text("abc_1_9\n\nabc_1_9\n")
    with pytest.raises(DataError, match=r"train_list\.txt line 3: video 'abc_1_9' repeats line 1"):
        load_split("msvd", msvd, "train")


def test_annotation_pickles_cannot_run_code(tmp_path):
    folder = write_msvd(tmp_path)
    with open(folder / "raw-captions.pkl", "wb") as f:
        pickle.dump({"abc_1_9": [Path("/etc")]}, f)
    with pytest.raises(DataError, match="only plain data"):
        load_split("msvd", folder, "train")


def test_bad_dataset_split_option_or_folder_names_the_choices(tmp_path):
    folder = write_msrvtt(tmp_path)
    with pytest.raises(CmadapterError, match="known: msrvtt, msvd"):
        load_split("kinetics", folder, "train")
    with pytest.raises(CmadapterError, match="its splits: train, test"):
        load_split("msrvtt", folder, "val")
    with pytest.raises(CmadapterError, match="its options: train_list"):
        load_split("msrvtt", folder, "train", fps=3)
    with pytest.raises(DataError, match="train_list must be one of 9k, 7k"):
        load_split("msrvtt", folder, "train", train_list="1k")
    with pytest.raises(DataError, match=r"annotation file not found: .*test_data\.json"):
        load_split("didemo", folder, "test")


def test_retrieval_split_needs_one_window_per_video():
    records = [Record("a", "x", "test", 0.0, 5.0), Record("a", "y", "test", 5.0, 9.0)]
    with pytest.raises(DataError, match="'a' appears with two time windows"):
        retrieval_split(records, "custom/test")


# ---- finding the video files --------------------------------------------------------------------------------


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_videos_are_found_with_any_extension_flat_or_nested(tmp_path):
    touch(tmp_path / "video0.mp4")
    touch(tmp_path / "a" / "b" / "video1.webm")
    touch(tmp_path / "video2.avi")
    touch(tmp_path / "c" / "video3.mkv")
    touch(tmp_path / "video4.txt")
    (tmp_path / "video5.mp4").mkdir()  # a frame folder
    touch(tmp_path / "video5.mp4" / "0001.jpg")
    found, missing = find_videos(tmp_path, [f"video{i}" for i in range(7)])
    assert {k: v.relative_to(tmp_path).as_posix() for k, v in found.items()} == {
        "video0": "video0.mp4",
        "video1": "a/b/video1.webm",
        "video2": "video2.avi",
        "video3": "c/video3.mkv",
        "video5": "video5.mp4",
    }
    assert missing == ["video4", "video6"]


def test_duplicates_resolve_the_same_way_whatever_the_walk_order(tmp_path):
    touch(tmp_path / "z" / "clip.webm")
    touch(tmp_path / "clip.mp4")
    touch(tmp_path / "a" / "clip.mp4")
    found, _ = find_videos(tmp_path, ["clip"])
    assert found["clip"] == tmp_path / "clip.mp4"  # mp4 before webm, then the shorter path


def test_activitynet_files_with_or_without_the_v_prefix(tmp_path):
    touch(tmp_path / "abc.mp4")
    touch(tmp_path / "v_-def.mkv")
    found, missing = find_videos(tmp_path, ["v_abc", "v_-def", "v_nope"], file_aliases)
    assert found == {"v_abc": tmp_path / "abc.mp4", "v_-def": tmp_path / "v_-def.mkv"}
    assert missing == ["v_nope"]


def test_didemo_ids_with_an_extension_find_converted_files(tmp_path):
    touch(tmp_path / "1234@N00_111_aaa.mov")
    touch(tmp_path / "5678@N01_222_bbb.mp4")  # converted from .avi
    found, missing = find_videos(tmp_path, ["1234@N00_111_aaa.mov", "5678@N01_222_bbb.avi"])
    assert found["1234@N00_111_aaa.mov"].name == "1234@N00_111_aaa.mov"
    assert found["5678@N01_222_bbb.avi"].name == "5678@N01_222_bbb.mp4" and not missing


def test_a_missing_videos_folder_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="videos folder not found"):
        find_videos(tmp_path / "nope", ["a"])
