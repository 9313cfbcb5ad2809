"""`train`, `eval`, `compare` and `demo`: runs from a config."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .arguments import csv_list, parse_assignments


def run_train(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..training.trainer import train

    overrides = list(args.overrides) + (["resume=auto"] if args.resume or args.resume_force else [])
    overrides += ["resume_force=true"] if args.resume_force else []
    train(load_config(args.config, overrides), progress=not args.no_progress)
    return 0


def add_train(sub) -> None:
    p = sub.add_parser("train", help="train an adapter (torchrun --nproc_per_node=N -m cmadapter train … for DDP)")
    p.set_defaults(run=run_train)
    p.add_argument("--config", required=True, help="YAML recipe, e.g. configs/msrvtt_vitb32.yaml")
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
        results = run_demo(args.out, quick=args.quick, seed=args.seed, methods=methods, progress=not args.no_progress)
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
    print(f"{results['timings_seconds']['total']:.0f} s in all.")
    runs = results.get("runs") or f"{args.out}/{results['variant']}/runs"
    print(f"Results: {args.out}/{files}; runs and TensorBoard events in {runs}/")
    if "grounding" in results:
        print(f"Report (Cross-Modal Adapter against zero-shot): {args.out}/report/report.html")
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
    p.add_argument("--no-progress", action="store_true")
