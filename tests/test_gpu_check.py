"""The GPU check stays runnable without a GPU: its dry run (every command checked, every CUDA test collected
and skipped), its step limits and budget, and its report from real benchmark output."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cmadapter.bench.gpu_check import Runner, Step, StepResult, bench_step
from cmadapter.bench.gpu_report import write_report
from cmadapter.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_dry_run_checks_every_command_and_skips_every_cuda_test(tmp_path):
    out = tmp_path / "gpu"
    script = ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", "--python", sys.executable]
    done = subprocess.run([*script, "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    report = json.loads((out / "results.json").read_text())
    assert report["dry_run"] and report["passed"]
    tests = report["tests"]
    assert tests["total"] >= 10 and tests["skipped"] == tests["total"], tests
    assert "tests/test_cuda.py" in tests["files"]
    steps = {s["name"]: s for s in report["steps"]}
    for name, batch in (("train-step-16", 16), ("train-step-128", 128)):
        plan = json.loads(steps[name]["output"])
        assert steps[name]["status"] == "checked" and plan["settings"]["batch"] == batch
        assert plan["settings"]["device"] == "cuda" and plan["settings"]["frames"] == 12
        assert [(r["method"], r["precision"]) for r in plan["runs"]] == [
            ("full", "bf16"),
            ("cross-modal", "bf16"),
            ("uni-modal", "bf16"),
        ]
    assert steps["encode"]["status"] == "checked" and steps["cuda-tests"]["status"] == "ok"
    assert "dry run: nothing measured" in (out / "results.md").read_text()


def test_a_bad_command_fails_the_dry_run(tmp_path):
    runner = Runner(tmp_path, ROOT, budget=100, dry_run=True)
    result = runner.run(bench_step("bad", ["train-step", "--methods", "full,nope"], 60, "bad.json"))
    assert result.status == "failed" and "unknown method 'nope'" in result.output
    result = runner.run(bench_step("bad", ["train-step", "--no-such-flag"], 60, "bad.json"))
    assert result.status == "failed" and "unrecognized arguments" in result.output


@pytest.mark.slow
def test_a_step_past_its_limit_is_killed_with_its_children(tmp_path):
    pid_file = tmp_path / "child.pid"
    code = (
        "import subprocess, time, sys; "
        f"p = subprocess.Popen(['sleep', '60']); open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(60)"
    )
    runner = Runner(tmp_path, ROOT, budget=100, dry_run=False)
    began = time.monotonic()
    result = runner.run(Step("hang", ["-c", code], limit=6))  # time to start even on a busy machine
    assert result.status == "timed-out" and time.monotonic() - began < 30
    child = Path(f"/proc/{pid_file.read_text()}/stat")
    time.sleep(0.5)
    assert not child.exists() or child.read_text().split(") ")[1].startswith("Z")  # gone (or a reaped-to-be zombie)


def test_steps_beyond_the_budget_are_skipped_and_said(tmp_path):
    runner = Runner(tmp_path, ROOT, budget=20, dry_run=False)
    result = runner.run(Step("late", ["-c", "pass"], limit=60))
    assert result.status == "skipped" and "budget" in result.note


@pytest.mark.slow
def test_report_tables_come_from_the_benchmarks_output(tmp_path, tiny_weights, capsys):
    args = ["--pretrained", str(tiny_weights), "--frames", "2", "--json", "--device", "cpu"]
    assert main(["bench", "train-step", "--methods", "full,cross-modal", "--precision", "fp32", "--batch", "2",
                 "--steps", "1", "--warmup", "1", *args]) == 0  # fmt: skip
    (tmp_path / "train_step_paper_batch.json").write_text(capsys.readouterr().out)
    assert main(["bench", "encode", "--videos", "2", "--texts", "4", "--repeats", "1", "--precision", "fp32",
                 "--retrieval-size", "10", *args]) == 0  # fmt: skip
    (tmp_path / "encode.json").write_text(capsys.readouterr().out)
    steps = [StepResult("train-step-16", "python -m cmadapter ...", "ok", 0, 1.0, 120)]
    report = write_report(tmp_path, steps, dry_run=False, setup_seconds=3, total_seconds=9)
    measured = json.loads((tmp_path / "train_step_paper_batch.json").read_text())["methods"]["cross-modal"]
    text = (tmp_path / "results.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| 2 × 2 | cross-modal |"))
    assert f"{measured['time_ratio_to_full']:.3f}×" in row and f"{measured['memory_ratio_to_full']:.3f}×" in row
    assert "≈0.72× / ≈0.78×" in row
    assert "## Encoding" in text and "ratio (adapter ÷ plain" in text
    assert not report["passed"]  # no CUDA test ran
    assert json.loads((tmp_path / "results.json").read_text())["train_step"]["paper batch"]["methods"]
