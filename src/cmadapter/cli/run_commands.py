"""`train`, `eval`, `compare` and `demo`: runs from a config."""

from __future__ import annotations

import argparse
import json
import os
from importlib.resources import files
from pathlib import Path
from typing import Any

from ..errors import CmadapterError
from .arguments import csv_list, parse_assignments

# configs/captions_vitb32.yaml, shipped inside the package so that the shortcut works from any install.
CAPTIONS_RECIPE = files("cmadapter") / "recipes" / "captions_vitb32.yaml"


def run_train(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..training.trainer import train

    own_data = bool(args.captions or args.shards)
    if args.config is None and not own_data:
        raise CmadapterError(
            "give --config RECIPE, or your own data: --captions TABLE --videos DIR, or --shards PATTERN"
        )
    overrides = own_data_overrides(args) + list(args.overrides)
    overrides += ["resume=auto"] if args.resume or args.resume_force else []
    overrides += ["resume_force=true"] if args.resume_force else []
    config = load_config(args.config or str(CAPTIONS_RECIPE), overrides)
    train(config, progress=not args.no_progress)
    if own_data and os.environ.get("RANK", "0") == "0":
        run = config.run_dir
        print(f"Evaluate: cmadapter eval --config {run / 'config.yaml'} --adapter {run / 'best.safetensors'}")
        m = config.model
        model = (f"--backbone {m.backbone} " if m.backbone else "") + (
            f"--pretrained {m.pretrained} " if m.pretrained else ""
        )
        print(
            f"Search with it: cmadapter index VIDEOS --out INDEX {model}--adapter {config.name}={run / 'best.safetensors'}"
        )
    return 0


def own_data_overrides(args: argparse.Namespace) -> list[str]:
    """``--captions``/``--shards``, ``--videos``, ``--pretrained``, ``--name`` as the recipe's keys."""
    from ..backbone import looks_like_path

    if args.captions and args.shards:
        raise CmadapterError("give --captions TABLE or --shards PATTERN, not both")
    if args.videos and not args.captions:
        raise CmadapterError("--videos is the folder of a captions table's videos: give --captions TABLE too")
    out: list[tuple[str, Any]] = []
    if args.captions:
        out += [("data.dataset", "captions"), ("data.annotations", args.captions), ("data.videos", args.videos)]
    if args.shards:
        out += [("data.dataset", "webdataset"), ("data.annotations", args.shards), ("data.videos", None)]
    if args.pretrained:
        # A weights file carries its architecture; a tag names the recipe's backbone's weights.
        out += [("model.pretrained", args.pretrained)]
        out += [("model.backbone", None)] if looks_like_path(args.pretrained) else []
    if args.name:
        out += [("name", args.name)]
    return [f"{key}={json.dumps(value)}" for key, value in out]


def add_train(sub) -> None:
    p = sub.add_parser("train", help="train an adapter (torchrun --nproc_per_node=N -m cmadapter train … for DDP)")
    p.set_defaults(run=run_train)
    p.add_argument(
        "--config",
        default=None,
        help="YAML recipe, e.g. configs/msrvtt_vitb32.yaml (with --captions/--shards: configs/captions_vitb32.yaml)",
    )
    own = p.add_argument_group("your own data (fills in the captions recipe, or --config)")
    own.add_argument("--captions", metavar="TABLE", help="captions table: CSV, TSV, JSON lines or Parquet")
    own.add_argument("--videos", metavar="DIR", help="the folder the table's video paths are relative to")
    own.add_argument(
        "--shards", metavar="PATTERN", help="WebDataset shards: 'shards/{00000..00099}.tar', a folder or list"
    )
    own.add_argument(
        "--pretrained", metavar="W", help="CLIP weights file or open_clip tag (default: the recipe's openai)"
    )
    own.add_argument("--name", metavar="N", help="the run's name: its folder is runs/N")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. train.epochs=3 model.method=uni-modal")
    p.add_argument("--resume", action="store_true", help="continue from the newest training state of the run")
    p.add_argument(
        "--resume-force",
        action="store_true",
        help="--resume even where the config differs from the one the state was trained with (listed as a warning)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run_eval(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..evaluation.run import evaluate_config
    from ..evaluation.tables import format_eval

    config = load_config(args.config, list(args.overrides))
    results = evaluate_config(config, adapter=args.adapter, split=args.split, progress=not args.no_progress)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps(results["test"]) if args.json else format_eval(results))
    if not args.json:
        run_dir = Path(args.adapter).parent if args.adapter else None
        where = run_dir if run_dir is not None and (run_dir / "config.yaml").is_file() else "RUN_DIR"
        print(f"Pictures of what a run learned: cmadapter report {where}")
    return 0


def add_eval(sub) -> None:
    p = sub.add_parser("eval", help="evaluate an adapter, or the frozen backbone zero-shot")
    p.set_defaults(run=run_eval)
    p.add_argument("--config", required=True, help="YAML recipe (data and model)")
    p.add_argument("--adapter", default=None, help="adapter checkpoint; without it: zero-shot")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--split", default=None, help="split to evaluate (default: the config's test split)")
    p.add_argument("--out", default=None, help="write the metrics as JSON here")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-progress", action="store_true")


def run_compare(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..evaluation.compare import compare, plan_runs
    from ..evaluation.tables import ZERO_SHOT, markdown_table

    base = load_config(args.config, list(args.overrides))
    sizes = {}
    for item in args.sizes:
        key, values = parse_assignments([item], "--sizes").popitem()
        sizes[key] = values if isinstance(values, list) else [values]
    base_options = {base.model.method: base.model.method_options} if base.model.method else {}
    runs = plan_runs(csv_list(args.methods), sizes, base_options)
    out = Path(args.out or base.run_dir / "comparison")
    table = compare(base, runs, out)
    print(markdown_table(table["methods"], table["media"]))
    trained = [label for label, row in table["methods"].items() if row["method"] != ZERO_SHOT]
    if trained:
        baseline = f" --baseline {out / ZERO_SHOT}" if ZERO_SHOT in table["methods"] else ""
        print(f"Pictures of what a run learned: cmadapter report {out / trained[0]}{baseline}")
    return 0


def add_compare(sub) -> None:
    p = sub.add_parser("compare", help="train and evaluate several methods with the same data, budget and seed")
    p.set_defaults(run=run_compare)
    p.add_argument("--config", required=True)
    p.add_argument(
        "--methods", required=True, help="comma-separated, e.g. zero-shot,cross-modal,uni-modal,full; 'all': every one"
    )
    p.add_argument(
        "--sizes",
        action="append",
        default=[],
        metavar="OPTION=V1,V2",
        help="sweep an option where a method has it, e.g. r=4,8,16",
    )
    p.add_argument("--out", default=None, help="comparison folder (default: <output_dir>/<name>/comparison)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")


def run_demo_command(args: argparse.Namespace) -> int:
    from ..evaluation.tables import gain_line, markdown_table

    if args.curve:
        return run_curve_command(args)
    if args.seeds is not None:
        raise CmadapterError("--seeds goes with --curve; the demo takes one --seed")
    if args.images:
        from ..demo.images import METHODS, run_image_demo

        methods = csv_list(args.methods) if args.methods else METHODS
        results = run_image_demo(
            args.out, quick=args.quick, seed=args.seed, methods=methods, progress=not args.no_progress
        )
        media, files = "image", "images_results.json, images_results.md"
    else:
        from ..demo.run import METHODS, run_demo

        methods = csv_list(args.methods) if args.methods else METHODS
        results = run_demo(
            args.out,
            quick=args.quick,
            seed=args.seed,
            methods=methods,
            domains=not args.no_domains,
            progress=not args.no_progress,
        )
        media, files = "video", "results.json, results.md, recall_vs_params.png"
    print()
    print(markdown_table(results["methods"], media))
    gain = gain_line(results["methods"], media)
    if gain:
        print(gain)
    search = results.get("search")
    if search:
        recall = ", ".join(f"{name} {value:.1f}" for name, value in search["t2v_R1"].items())
        print(f"\nSearch index of the {search['files']} test videos, text→video R@1 by search: {recall}")
        for example in search["examples"]:
            print(f"  {example['query']!r} (its video: {example['expected']})")
            for rank, hit in enumerate(example["results"], 1):
                print(f"    {rank}. {hit['score']:.4f}  {hit['video']}  {hit['start']:.0f}-{hit['end']:.0f} s")
        print("Search it yourself:\n" + "\n".join(f"  {command}" for command in search["commands"]))
    if results.get("step_time"):
        from ..demo.step_time import step_time_line

        print("\n" + step_time_line(results["step_time"]))
    if results.get("domains"):
        from ..demo.domains import domains_markdown

        print("\n" + domains_markdown(results["domains"]))
    print(f"{results['timings_seconds']['total']:.0f} s in all.")
    runs = results.get("runs") or f"{args.out}/{results['variant']}/runs"
    print(f"Results: {args.out}/{files}; runs and TensorBoard events in {runs}/")
    if "grounding" in results:
        print(f"Report (Cross-Modal Adapter against zero-shot): {args.out}/report/report.html")
    return 0


def run_curve_command(args: argparse.Namespace) -> int:
    import dataclasses

    from ..demo.curve import CurveSettings, curve_markdown, run_curve
    from ..demo.run import run_demo

    if args.images or args.methods:
        raise CmadapterError("--curve runs zero-shot, cross-modal and full on the video demo; drop --images/--methods")
    curve = CurveSettings.quick() if args.quick else CurveSettings()
    if args.seeds is not None:
        try:
            seeds = tuple(int(s) for s in csv_list(args.seeds))
        except ValueError:
            raise CmadapterError(f"--seeds takes comma-separated integers, got {args.seeds!r}") from None
        curve = dataclasses.replace(curve, seeds=seeds)
    results = run_curve(args.out, quick=args.quick, curve=curve, progress=not args.no_progress)
    print()
    print(curve_markdown(results))
    # The demo of the first seed (its finished runs reused) writes the report, now with the curve in it.
    run_demo(
        args.out, quick=args.quick, seed=curve.seeds[0], domains=not args.no_domains, progress=not args.no_progress
    )
    print(f"Curve: {args.out}/curve.json, curve.md, curve.png; report with the curve: {args.out}/report/report.html")
    return 0


def add_demo(sub) -> None:
    p = sub.add_parser("demo", help="offline end-to-end run on a synthetic dataset with a tiny CLIP")
    p.set_defaults(run=run_demo_command)
    p.add_argument("--out", default="demo_out", help="output folder (reused by reruns)")
    p.add_argument("--quick", action="store_true", help="a smaller dataset and budget (about two minutes)")
    p.add_argument("--images", action="store_true", help="the image-text variant (stills, five captions each)")
    p.add_argument(
        "--seed",
        type=int,
        default=42,
        help="seeds pretraining and every method's training; the synthetic dataset stays the same (default 42)",
    )
    p.add_argument(
        "--methods",
        default=None,
        help="comma-separated, or 'all' for zero-shot and every method "
        "(default zero-shot,cross-modal,uni-modal,full; with --images zero-shot,cross-modal,uni-modal,adapter-attn,maple)",
    )
    p.add_argument(
        "--curve",
        action="store_true",
        help="the learning curve: zero-shot, cross-modal and full fine-tuning on 15-300 training videos over "
        "--seeds (about 13 min of CPU time a seed; reuses finished runs)",
    )
    p.add_argument("--seeds", default=None, help="with --curve: comma-separated seeds (default 42,43,44)")
    p.add_argument(
        "--no-domains",
        action="store_true",
        help="skip the second domain (an adapter for the image demo's stills on the same backbone, one index)",
    )
    p.add_argument("--no-progress", action="store_true")
