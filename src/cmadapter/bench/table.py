"""``cmadapter bench table``: seconds to read a captions table into records, per format.

A synthetic table of ``rows`` captions (four per video, paths like ``clips/0001234.mp4``, a start/end window
on every tenth row, a split column) is written once per format, untimed; then ``load_split("captions", …,
"train")`` reads it ``repeat`` times (the median counts): parsing, the checks of every row, the split and
the ``Record`` objects, what a training run does before its first step.
"""

from __future__ import annotations

import csv
import json
import statistics
import tempfile
import time
from pathlib import Path

FORMATS = ("csv", "tsv", "jsonl", "parquet")


def synthetic_rows(rows: int) -> dict[str, list]:
    video = [f"clips/{i // 4:07d}.mp4" for i in range(rows)]
    caption = [f"a person does thing number {i % 997} near object {i % 89} while the camera pans" for i in range(rows)]
    start = [float(i % 60) if i % 10 == 0 else None for i in range(rows)]
    end = [float(i % 60) + 5.0 if i % 10 == 0 else None for i in range(rows)]
    split = ["test" if (i // 4) % 20 == 0 else "val" if (i // 4) % 20 == 1 else "train" for i in range(rows)]
    return {"video": video, "caption": caption, "start": start, "end": end, "split": split}


def write(columns: dict[str, list], path: Path, fmt: str) -> None:
    names = list(columns)
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table(columns), path)
        return
    rows = zip(*columns.values())
    with open(path, "w", newline="", encoding="utf-8") as f:
        if fmt == "jsonl":
            for row in rows:
                f.write(json.dumps(dict(zip(names, row))) + "\n")
            return
        writer = csv.writer(f, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
        writer.writerow(names)
        writer.writerows(["" if v is None else v for v in row] for row in rows)


def benchmark(rows: int, formats: list[str], *, repeat: int = 3, workdir: str | None = None) -> dict:
    from ..datasets import load_split
    from ..errors import CmadapterError

    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise CmadapterError(f"unknown table format {unknown[0]!r}; choose from {', '.join(FORMATS)}")
    columns = synthetic_rows(rows)
    results = []
    with tempfile.TemporaryDirectory(dir=workdir) as folder:
        for fmt in formats:
            path = Path(folder) / f"captions.{fmt}"
            write(columns, path, fmt)
            times, records = [], 0
            for _ in range(repeat):
                began = time.perf_counter()
                records = len(load_split("captions", path, "train"))
                times.append(time.perf_counter() - began)
            seconds = statistics.median(times)
            results.append(
                {
                    "format": fmt,
                    "megabytes": round(path.stat().st_size / 1e6, 1),
                    "seconds": seconds,
                    "rows_per_second": rows / seconds,
                    "train_records": records,
                }
            )
    return {"benchmark": "table", "rows": rows, "repeat": repeat, "formats": results}


def format_table(report: dict) -> str:
    lines = [f"{report['rows']:,} caption rows read into records (median of {report['repeat']}):"]
    for r in report["formats"]:
        lines.append(
            f"  {r['format']:<8} {r['megabytes']:>7.1f} MB  {r['seconds']:>6.2f} s  {r['rows_per_second']:>10,.0f} rows/s"
            f"  ({r['train_records']:,} train records)"
        )
    return "\n".join(lines)
