"""WebDataset shards: naming them, the scan and its problems (shard and key), the split, the stream's plan
(every sample once per epoch over processes and workers, exact resume), decoding errors under the missing
rule, pipe: shards, and `prepare webdataset` into the frame cache."""

from __future__ import annotations

import json
import logging
import re
import tarfile
from collections import Counter
from pathlib import Path

import pytest
import torch

from caption_data import colour_shards, write_shard
from cmadapter.cli import main
from cmadapter.datasets.shard_stream import ShardStream
from cmadapter.datasets.shards import scan_shard, shard_urls
from cmadapter.datasets.webdataset import ShardSet
from cmadapter.errors import DataError
from cmadapter.training.data import training_loader
from cmadapter.video.cache import FrameCache
from cmadapter.video.sampling import Sampling


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """Five shards of 4, 4, 4, 4 and 3 colour videos (19 samples; keys 00000 … 00018), .txt captions."""
    root = tmp_path_factory.mktemp("shards")
    colour_shards(root / "shards", root / "videos", per_shard=4, count=19)
    return root / "shards"


def tokenizer(texts: list[str]) -> torch.Tensor:
    return torch.tensor([len(t) for t in texts])


def stream(shards: Path, **kwargs) -> ShardStream:
    shard_set = ShardSet(str(shards / "{00000..00004}.tar"), val_fraction=0, test_fraction=0)
    return ShardStream(shard_set, tokenizer, image_size=32, max_frames=2, **kwargs)


# ---- naming and scanning ---------------------------------------------------------------------------------------


def test_shards_are_named_by_pattern_folder_or_list_file(shards, tmp_path):
    expected = [str(shards / f"{i:05d}.tar") for i in range(5)]
    assert shard_urls(str(shards / "{00000..00004}.tar")) == expected
    assert shard_urls(str(shards)) == expected
    listing = shards.parent / "train.txt"
    listing.write_text("# my shards\nshards/00000.tar\n\nshards/00001.tar\n")
    assert shard_urls(str(listing)) == expected[:2]
    bad = tmp_path / "bad.txt"
    bad.write_text("shards/00000.tar\npipe:rm -rf /tmp/x\n")
    with pytest.raises(DataError, match=r"bad\.txt line 2: a list file names local shard files only"):
        shard_urls(str(bad))
    assert shard_urls("pipe:cat a-{0..2}.tar") == ["pipe:cat a-0.tar", "pipe:cat a-1.tar", "pipe:cat a-2.tar"]


def test_a_scan_lists_samples_with_offsets_and_reads_them_back(shards):
    shard = scan_shard(str(shards / "00001.tar"))
    assert [s.key for s in shard.samples] == ["00004", "00005", "00006", "00007"]
    assert shard.problems == [] and shard.seekable
    assert shard.samples[0].caption == "a purple video" and shard.samples[0].member == "00004.mp4"
    shard_set = ShardSet(str(shards), val_fraction=0, test_fraction=0)
    clip = shard_set.read("00005", (None, None), Sampling(fps=1, max_frames=2), 32)
    assert clip.frames.shape == (2, 32, 32, 3)  # two seconds: two grid points at 1 fps
    piped = ShardSet(f"pipe:cat {shards}/{{00000..00004}}.tar", val_fraction=0, test_fraction=0)
    assert not piped.shards[None][0].seekable and list(piped.samples) == list(shard_set.samples)
    again = piped.read("00005", (None, None), Sampling(fps=1, max_frames=2), 32)
    assert (again.frames == clip.frames).all()


def problem_shards(folder: Path, video: bytes) -> dict[str, str]:
    """Shards each with one kind of problem -> the reason the scan must give (for key 'b')."""
    txt = lambda text: text.encode()
    cases = {
        "nocaption": ([("a", {"mp4": video, "txt": txt("x")}), ("b", {"mp4": video})], "no caption"),
        "empty": ([("b", {"mp4": video, "txt": txt("  ")})], r"empty caption \(\.txt\)"),
        "latin": ([("b", {"mp4": video, "txt": "caf\u00e9".encode("latin-1")})], "not UTF-8"),
        "novideo": ([("b", {"txt": txt("x"), "cls": b"3"})], r"no video or image member \(members: cls, txt\)"),
        "json": ([("b", {"mp4": video, "json": b'{"url": "x"}'})], "no 'caption' string"),
        "repeat": (
            [
                ("b", {"mp4": video, "txt": txt("x")}),
                ("c", {"mp4": video, "txt": txt("y")}),
                ("b", {"mp4": video, "txt": txt("z")}),
            ],
            "repeats an earlier sample",
        ),
        "twice": (
            [("b", {"mp4": video, "txt": txt("x")}), ("b", {"mp4": video, "txt": txt("y")})],
            r"two members 'b\.mp4'",
        ),
        "emptyvideo": ([("b", {"mp4": b"", "txt": txt("x")})], r"b\.mp4 is empty"),
        "hugetext": ([("b", {"mp4": video, "json": b" " * (1 << 20) + b"{}"})], r"b\.json holds 1,048,578 bytes"),
    }
    out = {}
    for name, (samples, reason) in cases.items():
        write_shard(folder / f"{name}.tar", samples)
        out[name] = reason
    full = write_shard(
        folder / "cut.tar", [("a", {"mp4": video, "txt": txt("x")}), ("b", {"mp4": video, "txt": txt("y")})]
    )
    b = scan_shard(str(full)).samples[1]
    (folder / "cut.tar").write_bytes(full.read_bytes()[: b.offset + b.size // 2])  # half of b's video
    out["cut"] = r"truncated shard \(b\.mp4 ends after the file's last byte\)"
    noend = write_shard(folder / "noend.tar", [("b", {"mp4": video, "txt": txt("y")})])
    with tarfile.open(noend) as archive:
        last = archive.getmembers()[-1]
    end = last.offset_data + -(-last.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
    noend.write_bytes(noend.read_bytes()[:end])  # every member whole, no end-of-archive blocks
    out["noend"] = "truncated shard .*end-of-archive"
    return out


def test_every_problem_is_named_by_shard_and_key(tmp_path, shards):
    video = (shards.parent / "videos" / "00000.mp4").read_bytes()
    for name, reason in problem_shards(tmp_path, video).items():
        shard = scan_shard(str(tmp_path / f"{name}.tar"))
        assert len(shard.problems) == 1, (name, shard.problems)
        problem = shard.problems[0]
        assert problem.key == "b" and problem.url.endswith(f"{name}.tar"), (name, problem)
        assert re.search(reason, problem.reason), (name, problem.reason)
    assert [s.key for s in scan_shard(str(tmp_path / "cut.tar")).samples] == ["a"]
    assert [s.key for s in scan_shard(str(tmp_path / "repeat.tar")).samples] == ["b", "c"]  # the first b stays
    missing = scan_shard(str(tmp_path / "absent.tar"))
    assert missing.problems[0].key is None and "no such file" in str(missing.problems[0])


def test_problems_fail_the_run_or_are_dropped_and_counted(tmp_path, shards, caplog):
    video = (shards.parent / "videos" / "00000.mp4").read_bytes()
    problem_shards(tmp_path, video)
    pattern = str(tmp_path / "{empty,cut}.tar")  # empty.tar: b without caption; cut.tar: a whole, b cut
    with pytest.raises(
        DataError,
        match=r"2 problems in the shards: shard .*empty\.tar key 'b': empty caption.*cut\.tar key 'b': truncated.*data\.missing=drop",
    ):
        ShardSet(pattern, val_fraction=0, test_fraction=0)
    kept = ShardSet(pattern, val_fraction=0, test_fraction=0, missing="drop")
    assert sorted(kept.samples) == ["a"] and len(kept.problems) == 2
    # The same key in two shards is a problem too (keys are the video ids).
    write_shard(tmp_path / "again.tar", [("a", {"mp4": video, "txt": b"x"})])
    with pytest.raises(DataError, match=r"again\.tar key 'a': the key is also in shard .*nocaption\.tar"):
        ShardSet(str(tmp_path / "{nocaption,again}.tar"), val_fraction=0, test_fraction=0)


def test_splits_by_key_or_from_val_and_test_shards(shards):
    drawn = ShardSet(str(shards), val_fraction=0.2, test_fraction=0.2, split_seed=1)
    counts = Counter(drawn.split_of.values())
    assert counts == {"train": 11, "val": 4, "test": 4} and drawn.own_split() == drawn.split_of
    assert {r.video_id for r in drawn.records("test")} == {k for k, s in drawn.split_of.items() if s == "test"}
    given = ShardSet(
        str(shards / "{00000..00002}.tar"), val_shards=str(shards / "00003.tar"), test_shards=str(shards / "00004.tar")
    )
    assert [r.video_id for r in given.records("test")] == ["00016", "00017", "00018"] and given.own_split() is None
    assert len(given.records("train")) == 12 and len(given.records("val")) == 4


# ---- the stream's plan ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("world_size,workers,batch", [(1, 1, 4), (2, 2, 4), (2, 3, 6), (3, 2, 3)])
def test_every_sample_once_per_epoch_over_processes_and_workers(shards, world_size, workers, batch):
    data = stream(shards)
    data.configure(batch, world_size=world_size)
    for epoch in range(3):
        seen = []
        for rank in range(world_size):
            data.rank = rank
            for worker in range(workers):
                slot = data.slot(epoch, rank, worker, workers)
                assert len(slot) == len(range(worker, data.steps, workers)) * (batch // world_size)
                seen += [s.key for _, s in slot]
        assert len(seen) == len(set(seen)) == (19 // batch) * batch  # the last 19 mod B wait for the next epoch
    firsts = [[s.key for _, s in data.slot(e, 0, 0, workers)][:1] for e in range(4)]
    assert len({tuple(f) for f in firsts}) > 1  # the shards are shuffled per epoch


def keys_of_epoch(data: ShardStream, loader, epoch: int, start: int = 0) -> list[list[str]]:
    data.set_epoch(epoch, start)
    return [list(ids) for *_, ids in loader]


def test_a_loader_with_workers_delivers_the_plan_and_resumes_mid_epoch(shards):
    data = stream(shards, shuffle_buffer=3, seed=5)
    loader, positioner = training_loader(data, None, 4, seed=5, workers=2)
    assert positioner is data and data.steps == 4
    batches = keys_of_epoch(data, loader, 1)
    assert [len(b) for b in batches] == [4, 4, 4, 4] and len({k for b in batches for k in b}) == 16
    assert keys_of_epoch(data, loader, 1) == batches  # seeded: the same epoch again is the same
    assert keys_of_epoch(data, loader, 1, start=1) == batches[1:]  # resumed after one batch (worker 1 first)
    assert keys_of_epoch(data, loader, 1, start=2) == batches[2:]
    assert keys_of_epoch(data, loader, 2) != batches


def test_an_undecodable_member_fails_with_shard_and_key_or_is_replaced(tmp_path, shards, caplog):
    video = (shards.parent / "videos" / "00000.mp4").read_bytes()
    samples = [(f"k{i}", {"mp4": video, "txt": b"a red video"}) for i in range(4)]
    samples[2] = ("k2", {"mp4": b"\x00" * 2000, "txt": b"noise"})
    write_shard(tmp_path / "bad.tar", samples)
    shard_set = ShardSet(str(tmp_path / "bad.tar"), val_fraction=0, test_fraction=0)
    strict = ShardStream(shard_set, tokenizer, 32, 2, shuffle_buffer=1)
    strict.configure(4)
    with pytest.raises(DataError, match=r"shard .*bad\.tar key 'k2': cannot decode.*data\.missing=drop"):
        list(strict)
    lenient = ShardStream(shard_set, tokenizer, 32, 2, shuffle_buffer=1, missing="drop")
    lenient.configure(4)
    caplog.set_level(logging.WARNING)
    assert [item[3] for item in lenient] == ["k0", "k1", "k1", "k3"]
    assert any("dropping shard" in r.getMessage() and "'k2'" in r.getMessage() for r in caplog.records)


# ---- training from shards and prepare --------------------------------------------------------------------------


def test_train_from_shards_and_prepare_them_into_a_frame_cache(shards, tmp_path, tiny_weights, capsys):
    args = ["train", "--shards", str(shards), "--pretrained", str(tiny_weights), "--name", "w", "--no-progress"]
    args += [f"output_dir={tmp_path / 'runs'}", "data.max_frames=2", "data.workers=2", "data.val_split=null"]
    args += ["train.batch_size=4", "train.epochs=1", "train.precision=fp32", "train.device=cpu"]
    args += ["data.dataset_options={test_fraction: 0.2, shuffle_buffer: 4}"]
    assert main(args) == 0
    run = tmp_path / "runs" / "w"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["global_step"] == 13 // 4 and metrics["test"]["t2v"]["queries"] == 4
    assert (run / "splits.csv").read_text().count(",test") == 4

    cache = tmp_path / "cache"
    assert (
        main(
            [
                "prepare",
                "webdataset",
                "--annotations",
                str(shards),
                "--out",
                str(cache),
                "--short-side",
                "32",
                "--workers",
                "0",
            ]
        )
        == 0
    )
    assert "19 samples decoded" in capsys.readouterr().out
    frames = FrameCache(cache).read("00007", (None, None), Sampling(fps=1, max_frames=2), 32).frames
    direct = ShardSet(str(shards), val_fraction=0, test_fraction=0).read("00007", (None, None), Sampling(1, 2), 32)
    assert (frames == direct.frames).all()  # the cache gives the clip the shard gives
    assert main([*args[:-1], "data.dataset_options={test_fraction: 0.2}", f"data.cache={cache}", "name=c"]) == 0
    cached = json.loads((tmp_path / "runs" / "c" / "metrics.json").read_text())
    assert cached["test"]["t2v"]["queries"] == 4


def test_an_undecodable_member_in_a_loader_worker_is_one_line_from_the_cli(tmp_path, shards, tiny_weights, capsys):
    video = (shards.parent / "videos" / "00000.mp4").read_bytes()
    samples = [(f"k{i}", {"mp4": video, "txt": b"a red video"}) for i in range(8)]
    samples[2] = ("k2", {"mp4": b"\x00" * 2000, "txt": b"noise"})
    write_shard(tmp_path / "bad.tar", samples)
    args = ["train", "--shards", str(tmp_path / "bad.tar"), "--pretrained", str(tiny_weights), "--no-progress"]
    args += [f"output_dir={tmp_path / 'runs'}", "data.max_frames=2", "data.workers=1", "data.val_split=null"]
    args += ["data.test_split=null", "data.dataset_options={val_fraction: 0, test_fraction: 0}"]
    args += ["train.batch_size=8", "train.epochs=1", "train.precision=fp32", "train.device=cpu"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "in a data-loader worker" in err, err
    assert re.search(r"shard .*bad\.tar key 'k2': cannot decode", err), err
