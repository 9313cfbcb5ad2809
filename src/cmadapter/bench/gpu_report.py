"""The GPU check's report: ``results.json`` (everything measured) and ``results.md`` (tables ready for
docs/BENCHMARKS.md), written from the steps' records and the files they left in the folder."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

# The paper's efficiency claim for the Cross-Modal Adapter against full fine-tuning (8 GPUs, ViT-B/32).
PAPER = {"time_ratio_to_full": 0.72, "memory_ratio_to_full": 0.78}
TRAIN_STEP_FILES = {"paper batch": "train_step_paper_batch.json", "large batch": "train_step_large_batch.json"}


def read_json(path: Path) -> dict | None:
    """A step's JSON output, or None where the step wrote none (failed, timed out, skipped)."""
    try:
        text = path.read_text().strip()
        return json.loads(text.splitlines()[-1]) if text else None
    except (OSError, json.JSONDecodeError, IndexError):
        return None


def read_tests(path: Path) -> dict:
    """Counts and per-test outcomes from pytest's JUnit XML; zeros where pytest wrote none."""
    tests = {"total": 0, "passed": 0, "failed": 0, "skipped": 0, "cases": []}
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError):
        return tests
    for case in root.iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            element = case.find(tag)
            if element is not None:
                outcome = "skipped" if tag == "skipped" else "failed"
                message = (element.get("message") or "").splitlines()[0][:300] if element.get("message") else ""
                break
        tests["total"] += 1
        tests[outcome] += 1
        tests["cases"].append(
            {"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome, "message": message}
        )
    return tests


def machine_facts(measured: list[dict]) -> dict:
    """The GPU, torch and CUDA of the run: from the benchmarks' own records where any ran, else this process."""
    for report in measured:
        if report and "machine" in report:
            return report["machine"]
    import torch

    from .machine import describe_machine

    return describe_machine(torch.device("cpu")) | {"gpu": "none", "cuda": torch.version.cuda or "none"}


def passed(steps: list[dict], tests: dict, dry_run: bool) -> bool:
    if tests["total"] == 0 or tests["failed"]:
        return False
    if dry_run:
        return tests["skipped"] == tests["total"] and all(
            s["status"] in ("checked", "ok") or s["note"] == "dry run" for s in steps
        )
    return tests["passed"] == tests["total"] and all(s["status"] == "ok" for s in steps)


def write_report(
    out: Path,
    results: list,
    *,
    dry_run: bool,
    setup_seconds: float,
    total_seconds: float,
    command: str = "",
    test_files: list[str] = (),
) -> dict:
    steps = [asdict(r) for r in results]
    tests = read_tests(out / "pytest.xml")
    train_step = {label: read_json(out / name) for label, name in TRAIN_STEP_FILES.items()}
    encode = read_json(out / "encode.json")
    index = read_json(out / "index.json")
    report = {
        "dry_run": dry_run,
        "when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "machine": machine_facts([*train_step.values(), encode]),
        "setup_seconds": round(setup_seconds, 1),
        "total_seconds": round(total_seconds, 1),
        "steps": steps,
        "tests": tests | {"files": list(test_files)},
        "train_step": train_step,
        "encode": encode,
        "index": index,
        "paper": PAPER,
    }
    report["passed"] = passed(steps, tests, dry_run)
    (out / "results.json").write_text(json.dumps(report, indent=2))
    (out / "results.md").write_text(format_report(report))
    return report


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}×"


def train_step_table(reports: dict[str, dict | None]) -> list[str]:
    lines = [
        "| batch (videos × frames) | method | step (s) | samples/s | max_memory_allocated (MB) | trainable "
        "| TFLOP/step | % of matmul peak | time vs full | memory vs full | paper (time / memory) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for report in reports.values():
        if report is None:
            continue
        settings = report["settings"]
        for key, row in report["methods"].items():
            paper = (
                f"≈{PAPER['time_ratio_to_full']}× / ≈{PAPER['memory_ratio_to_full']}×"
                if row["method"] == "cross-modal"
                else ""
            )
            lines.append(
                f"| {settings['batch']} × {settings['frames']} | {key} | {row['step_seconds']:.4f} "
                f"| {row['samples_per_second']:.1f} | {row['peak_memory_mb']:.0f} | {row['trainable_params']:,} "
                f"| {row['step_flops'] / 1e12:.2f} | {100 * row['fraction_of_matmul_peak']:.0f}% "
                f"| {_ratio(row['time_ratio_to_full'])} | {_ratio(row['memory_ratio_to_full'])} | {paper} |"
            )
    return lines


def format_report(report: dict) -> str:
    from .encode import format_table as encode_table

    m = report["machine"]
    tests = report["tests"]
    verdict = "passed" if report["passed"] else "FAILED"
    title = "GPU check (dry run: nothing measured)" if report["dry_run"] else "GPU check"
    lines = [
        f"# {title}: {verdict}",
        "",
        f"GPU: {m.get('gpu', 'none')} ({m.get('gpu_memory_mb', '?')} MB, compute capability "
        f"{m.get('compute_capability', '?')}) · torch {m.get('torch')} · CUDA {m.get('cuda', 'none')} "
        f"· cuDNN {m.get('cudnn', '?')} · CPU {m.get('cpu', '?')} ({m.get('cores', '?')} cores)",
        "",
        f"{report['when']}; {report['total_seconds']:.0f} s in all, set-up {report['setup_seconds']:.0f} s."
        + (f" Command: `{report['command']}`" if report["command"] else ""),
        "",
        "## Steps",
        "",
        "| step | status | seconds | limit (s) | note |",
        "|---|---|---:|---:|---|",
    ]
    for step in report["steps"]:
        lines.append(
            f"| {step['name']} | {step['status']} | {step['seconds']:.1f} | {step['limit']} | {step['note']} |"
        )
    lines += [
        "",
        f"## CUDA tests ({', '.join(tests['files']) or 'no files'})",
        "",
        f"{tests['passed']} passed, {tests['failed']} failed, {tests['skipped']} skipped, of {tests['total']}.",
    ]
    lines += [f"- {c['outcome']}: `{c['test']}` {c['message']}" for c in tests["cases"] if c["outcome"] == "failed"]
    if any(report["train_step"].values()):
        lines += [
            "",
            "## Training step (ViT-B/32, random weights, bf16 autocast, frozen weights stored in bf16)",
            "",
            "Median step of forward, symmetric InfoNCE, backward, clipping and AdamW; each method in its own process. "
            "Memory is `torch.cuda.max_memory_allocated`. The paper's ratios were measured on 8 GPUs at the same "
            "per-GPU batch of 16 videos.",
            "",
            *train_step_table(report["train_step"]),
        ]
    if report["encode"]:
        settings = report["encode"]["settings"]
        lines += [
            "",
            f"## Encoding ({settings['videos']} videos × {settings['frames']} frames and {settings['texts']} captions "
            f"a batch, {settings['precision']})",
            "",
            encode_table(report["encode"]),
        ]
    if report.get("index") and report["index"].get("throughput"):
        from .index import format_throughput

        lines += [
            "",
            "## Indexing (`bench index --parts throughput` on the GPU)",
            "",
            format_throughput(report["index"]["throughput"]),
        ]
    return "\n".join(lines) + "\n"
