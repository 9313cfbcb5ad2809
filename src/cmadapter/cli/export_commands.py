"""`export`: an index's features as Parquet files for DuckDB, LanceDB, Spark or a vector database's bulk loader."""

from __future__ import annotations

import argparse
import json

from ..search.files import display_path


def run_export(args: argparse.Namespace) -> int:
    from ..search.export import export_index

    report = export_index(args.index, args.out)
    if args.json:
        print(json.dumps({**report.__dict__, "out": display_path(str(report.out))}))
        return 0
    columns = ", ".join(f"{name}: {a['vector_column']}/{a['feature_column']}" for name, a in report.adapters.items())
    print(
        f"{display_path(str(report.out))}: {report.videos} videos, {report.segments} segments, {report.frames} frames"
        f" of generation {report.generation} (segments.parquet, frames.parquet, export.json; columns {columns})"
    )
    return 0


def add_export(sub) -> None:
    p = sub.add_parser("export", help="write an index's features as Parquet (DuckDB, LanceDB, Spark, ...)")
    p.set_defaults(run=run_export)
    p.add_argument("index", help="an index folder written by `cmadapter index`")
    p.add_argument("--out", required=True, help="the export folder (created; an earlier export there is replaced)")
    p.add_argument("--json", action="store_true", help="print the counts and columns as one JSON object")
