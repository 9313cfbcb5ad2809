"""`report`: pictures and tables of what a run learned, in one self-contained HTML page."""

from __future__ import annotations

import argparse


def run_report(args: argparse.Namespace) -> int:
    from ..report.build import ReportOptions, write_report

    baseline = None if args.baseline == "none" else args.baseline
    options = ReportOptions(
        baseline=baseline, examples=args.examples, heatmaps=args.heatmaps, seed=args.seed, split=args.split
    )
    result = write_report(args.run_dir, args.out, options)
    for model in result["models"]:
        t, v = model["metrics"]["t2v"], model["metrics"]["v2t"]
        print(f"{model['label']}: t2v R@1 {t['R1']:.1f}  v2t R@1 {v['R1']:.1f}")
    print(f"Report: {result['html']}")
    return 0


def add_report(sub) -> None:
    p = sub.add_parser(
        "report", help="retrieval examples, frame weights, patch heatmaps and training curves of a run, as HTML"
    )
    p.set_defaults(run=run_report)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (config.yaml, best.safetensors, metrics.json)")
    p.add_argument(
        "--baseline", default="zero-shot", help="'zero-shot' (default: the frozen backbone), another RUN_DIR, or 'none'"
    )
    p.add_argument("--examples", type=int, default=6, help="queries shown per direction (default 6)")
    p.add_argument("--heatmaps", type=int, default=3, help="captions with patch heatmaps over their video (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the choice of examples")
    p.add_argument("--split", default=None, help="split to report on (default: the run's test split)")
    p.add_argument("--out", default=None, help="output folder (default: RUN_DIR/report)")
