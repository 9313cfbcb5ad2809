"""`info` and `convert-official`: what a backbone + method trains, and importing official checkpoints."""

from __future__ import annotations

import argparse
import json

from .arguments import parse_assignments


def run_info(args: argparse.Namespace) -> int:
    from ..model import build_model

    options = parse_assignments(args.option, "--option")
    if args.r is not None:
        options["r"] = args.r
    if args.shared_dim is not None:
        options["shared_dim"] = args.shared_dim
    method = None if args.method == "none" else args.method
    if args.backbone is None and args.pretrained is None:
        args.backbone = "ViT-B-32-quickgelu"
    # Counting needs shapes only: build on the meta device unless weights were asked for.
    device = "meta" if args.pretrained is None else "cpu"
    model = build_model(args.backbone, args.pretrained, method=method, device=device, **options)
    counts = model.num_parameters()
    report = {
        "backbone": args.backbone,
        "method": args.method,
        "options": model.method.describe()["options"] if model.method is not None else {},
        **counts,
        "trainable_percent": 100.0 * counts["trainable_params"] / counts["total_params"],
        "breakdown": model.method.parameter_breakdown() if model.method is not None else {},
        "architecture": model.backbone.architecture.to_dict(),
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"backbone          {args.backbone or model.backbone.source}")
    print(f"method            {args.method} {report['options']}")
    print(f"trainable params  {counts['trainable_params']:,} ({report['trainable_percent']:.2f}% of total)")
    for part, count in report["breakdown"].items():
        print(f"  {part:<15} {count:,}")
    print(f"total params      {counts['total_params']:,}")
    return 0


def add_info(sub) -> None:
    p = sub.add_parser("info", help="parameter counts of a backbone + method")
    p.set_defaults(run=run_info)
    p.add_argument("--backbone", default=None, help="open_clip model name (default ViT-B-32-quickgelu)")
    p.add_argument("--pretrained", default=None, help="weights file (architecture read off it) or open_clip tag")
    p.add_argument("--method", default="cross-modal", help="adaptation method, or 'none'")
    p.add_argument("--r", type=int, default=None, help="adapter bottleneck width")
    p.add_argument("--shared-dim", type=int, default=None, help="d_s: Up channels shared by vision and text")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="other method options")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run_convert_official(args: argparse.Namespace) -> int:
    from ..checkpoint import save_adapter_checkpoint
    from ..official import convert_official

    checkpoint = convert_official(
        args.checkpoint, backbone_name=args.backbone, head=args.head, context_length=args.context_length
    )
    save_adapter_checkpoint(checkpoint, args.out)
    print(
        f"wrote {args.out}: {checkpoint.method} adapter, r={checkpoint.options['r']}, "
        f"d_s={checkpoint.options['shared_dim']}, {checkpoint.num_parameters:,} parameters"
    )
    return 0


def add_convert_official(sub) -> None:
    p = sub.add_parser("convert-official", help="import a checkpoint of the official Cross-Modal Adapter code")
    p.set_defaults(run=run_convert_official)
    p.add_argument("checkpoint", help="pytorch_model.bin.N written by LeapLabTHU/Cross-Modal-Adapter")
    p.add_argument("--out", required=True, help="adapter checkpoint to write (.safetensors)")
    p.add_argument("--backbone", default=None, help="open_clip name, needed when the file holds no CLIP weights")
    p.add_argument("--head", default="text-pool", choices=["text-pool", "meanP"])
    p.add_argument("--context-length", type=int, default=32)
