"""A frame cache at the paper's input size, and a run config over it, for `cmadapter bench loader`.

The demo's videos are 64 px; the loader's cost depends on the frame size and count, so this writes
synthetic videos in the MSR-VTT layout at 256 px with twelve 1-second segments (a 1-fps sampler takes
12 frames, as the recipes do), decodes them once into a 224-px cache, and writes a config that trains
ViT-B/32 (random weights) from it, batch 8, bf16, two loader workers:

    python benchmarks/make_loader_bench_data.py OUT_DIR
    cmadapter bench loader --config OUT_DIR/loader_bench.yaml

The same videos as your own data, for reading them three ways in one run: the demo's captions table
(``data/captions.csv``) with its own 224-px cache (``cache_captions/``, ids are paths), the videos as
WebDataset shards (``shards/``, one sample per video: ``{id}.mp4`` and its first caption as ``{id}.txt``),
and a captions config over them:

    cmadapter bench loader --config OUT_DIR/own_data_bench.yaml --sources videos,cache,shards \
        --shards 'OUT_DIR/shards/{00000..00007}.tar'
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from cmadapter.config import load_config, save_config
from cmadapter.demo.dataset_files import generate_dataset
from cmadapter.demo.synthetic import SyntheticConfig
from cmadapter.video.cache import PrepareOptions, prepare_cache
from cmadapter.video.sources import VideoFolder, VideoPaths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--videos", type=int, default=64, help="training videos")
    args = parser.parse_args()

    synthetic = SyntheticConfig(num_train=args.videos, num_test=8, objects_per_video=12, frame_size=256, crf=23)
    data = generate_dataset(args.out / "data", synthetic)
    cache = args.out / "cache"
    prepare_cache(
        [v.video_id for v in data.videos], VideoFolder(data.video_dir), cache, PrepareOptions(fps=1.0, short_side=224)
    )
    config = load_config(
        None,
        {
            "name": "loader_bench",
            "output_dir": str(args.out / "runs"),
            "model.backbone": "ViT-B-32-quickgelu",
            "model.pretrained": None,
            "data.dataset": "msrvtt",
            "data.annotations": str(data.annotations),
            "data.videos": str(data.video_dir),
            "data.cache": str(cache),
            "data.workers": 2,
            "train.batch_size": 8,
            "train.precision": "bf16",
        },
    )
    path = args.out / "loader_bench.yaml"
    save_config(config, path)
    print(f"wrote {path}")
    own_data(args.out, data, config)


def own_data(out: Path, data, config) -> None:
    """The captions table's cache, the shards and the captions config (see the module's docstring)."""
    from webdataset import ShardWriter

    table = data.root / "captions.csv"
    paths = [data.video_path(v.video_id).relative_to(data.video_dir).as_posix() for v in data.videos]
    cache = out / "cache_captions"
    prepare_cache(paths, VideoPaths(data.video_dir), cache, PrepareOptions(fps=1.0, short_side=224))
    (out / "shards").mkdir(parents=True, exist_ok=True)
    per_shard = -(-len(data.videos) // 8)
    with ShardWriter(str(out / "shards" / "%05d.tar"), maxcount=per_shard, verbose=0) as sink:
        for video in data.videos:
            path = data.video_path(video.video_id)
            sink.write({"__key__": video.video_id, "mp4": path.read_bytes(), "txt": video.captions[0]})
    own = dataclasses.replace(config, name="own_data_bench")
    own.data = dataclasses.replace(
        config.data, dataset="captions", annotations=str(table), videos=str(data.video_dir), cache=str(cache)
    )
    path = out / "own_data_bench.yaml"
    save_config(own, path)
    print(f"wrote {path} and {out / 'shards'}/")


if __name__ == "__main__":
    main()
