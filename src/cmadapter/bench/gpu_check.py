"""The GPU check: every CUDA test and the paper's efficiency measurements, in one bounded run, into one folder.

``benchmarks/gpu_check.sh`` sets up the environment and then runs ``python -m cmadapter.bench.gpu_check``.
Each step is a separate process with its own time limit (a hang costs that step, not the run), and the
limits are cut to what is left of the whole run's budget. Whatever happens, the folder ends with the
report (``results.md``, ``results.json``, see ``gpu_report``), so a partial run still shows what it measured.

With ``--dry-run`` nothing is measured: the CUDA tests are collected with no GPU visible (so all of them
skip) and every benchmark command is parsed and checked with ``--dry-run`` in this process, which keeps
the check fast enough for the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

PAPER_BATCH = 16  # the paper's global batch of 128 over 8 GPUs: 16 videos of 12 frames per GPU
LARGE_BATCH = 128  # the whole global batch on one GPU
REPORT_RESERVE = 15  # seconds of the budget kept for writing the report


@dataclass
class Step:
    name: str
    argv: list[str]  # what follows the Python interpreter
    limit: int  # seconds
    output: str | None = None  # file in the folder that receives stdout (JSON); None: stdout goes to the log
    kind: str = "command"  # "command", "pytest" or "bench" (a cmadapter command, checked in-process on a dry run)


@dataclass
class StepResult:
    name: str
    command: str
    status: str  # ok, failed, timed-out, skipped, checked (dry run)
    returncode: int | None = None
    seconds: float = 0.0
    limit: int = 0
    output: str = ""  # short stdout of a probe, or the plan of a checked command
    note: str = ""
    extra: dict = field(default_factory=dict)


def bench_step(name: str, args: list[str], limit: int, output: str) -> Step:
    return Step(name, ["-m", "cmadapter", "bench", *args, "--json"], limit, output, kind="bench")


def default_steps(out: Path, test_files: list[str]) -> list[Step]:
    """The run, most important first: if the budget runs out, the paper-batch figures are already there."""
    train_step = "train-step --methods full,cross-modal,uni-modal --precision bf16 --frames 12 --steps 10 --warmup 3"
    encode = "encode --precision bf16 --videos 64 --frames 12 --texts 1024 --repeats 10"
    # Indexing on the GPU: can four decoder threads keep the encoder fed? (decode, encode and index frames/s)
    index = (
        "index --parts throughput --precision bf16 --batch-size 128 --decode-workers 4 --long-minutes 1 --generated 8"
    )
    pytest = [
        "-m",
        "pytest",
        "-q",
        "-rs",
        "-m",
        "cuda",
        "-p",
        "no:cacheprovider",
        "--junitxml",
        str(out / "pytest.xml"),
    ]
    probe = "import torch; print(torch.cuda.get_device_name(0), torch.__version__, torch.version.cuda)"
    return [
        Step("gpu", ["-c", probe], 60),
        bench_step(
            f"train-step-{PAPER_BATCH}",
            [*train_step.split(), "--batch", str(PAPER_BATCH), "--device", "cuda"],
            120,
            "train_step_paper_batch.json",
        ),
        Step("cuda-tests", [*pytest, *test_files], 210, kind="pytest"),
        bench_step("encode", [*encode.split(), "--device", "cuda"], 75, "encode.json"),
        bench_step("index", [*index.split(), "--device", "cuda"], 90, "index.json"),
        bench_step(
            f"train-step-{LARGE_BATCH}",
            [*train_step.split(), "--batch", str(LARGE_BATCH), "--device", "cuda"],
            150,
            "train_step_large_batch.json",
        ),
    ]


def cuda_test_files(root: Path) -> list[str]:
    """The test modules holding tests marked ``cuda`` (only those are collected: the others may need packages
    a GPU image lacks)."""
    return sorted(
        str(path.relative_to(root)) for path in (root / "tests").glob("test_*.py") if "mark.cuda" in path.read_text()
    )


class Runner:
    def __init__(self, out: Path, root: Path, budget: float, *, dry_run: bool, python: str = sys.executable):
        self.out, self.root, self.budget, self.dry_run, self.python = out, root, budget, dry_run, python
        self.started = time.monotonic()
        self.log = out / "gpu_check.log"

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.started)

    def run(self, step: Step) -> StepResult:
        command = shlex.join(["python", *step.argv])
        limit = int(min(step.limit, self.left() - REPORT_RESERVE))
        result = StepResult(step.name, command, "skipped", limit=max(limit, 0))
        if limit < min(step.limit, 10):
            result.note = "not started: the run's time budget was spent"
            return result
        if self.dry_run and step.name == "gpu":
            result.note = "dry run"
            return result
        if self.dry_run and step.kind == "bench":
            return self._check(step, result)
        env = dict(os.environ)
        if self.dry_run:  # the CUDA tests must be collected and skip, whatever this machine has
            env["CUDA_VISIBLE_DEVICES"] = ""
        began = time.monotonic()
        with contextlib.ExitStack() as stack:
            log_file = stack.enter_context(open(self.log, "a"))
            log_file.write(f"\n===== {step.name} (limit {limit} s): {command}\n")
            log_file.flush()
            stdout = stack.enter_context(open(self.out / step.output, "w")) if step.output else subprocess.PIPE
            # A session of its own: on timeout the whole group goes (benchmark workers, torchrun's children).
            process = subprocess.Popen(
                [self.python, *step.argv],
                stdout=stdout,
                stderr=log_file,
                env=env,
                cwd=self.root,
                start_new_session=True,
                text=True,
            )
            try:
                printed, _ = process.communicate(timeout=limit)
                result.returncode = process.returncode
                result.status = "ok" if process.returncode == 0 else "failed"
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):  # the group may have ended meanwhile
                    os.killpg(process.pid, signal.SIGKILL)
                printed, _ = process.communicate()
                result.status, result.note = "timed-out", f"killed after {limit} s"
            if printed:
                log_file.write(printed)
                result.output = printed.strip()[-2000:]
        result.seconds = round(time.monotonic() - began, 1)
        return result

    def _check(self, step: Step, result: StepResult) -> StepResult:
        """A cmadapter command with ``--dry-run``, in this process: parsed and checked, nothing run."""
        from ..cli import main

        argv = [a for a in step.argv[2:] if a != "--json"] + ["--dry-run"]
        began = time.monotonic()
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse's verdict on a bad command line
                code = exc.code if isinstance(exc.code, int) else 2
        result.returncode = code
        result.status = "checked" if code == 0 else "failed"
        result.output = printed.getvalue().strip()[-2000:]
        result.seconds = round(time.monotonic() - began, 1)
        with open(self.log, "a") as log_file:
            log_file.write(f"\n===== {step.name} (dry run): cmadapter {shlex.join(argv)}\n{result.output}\n")
        return result


def run_check(
    out: Path, *, root: Path, budget: float, dry_run: bool, setup_seconds: float = 0.0, command: str = ""
) -> bool:
    """Run every step from the repository ``root``, write the report; True when every step succeeded and every
    CUDA test passed (or, on a dry run, every command was checked and every CUDA test collected and skipped)."""
    from .gpu_report import write_report

    out.mkdir(parents=True, exist_ok=True)
    runner = Runner(out, root, budget - setup_seconds, dry_run=dry_run)
    test_files = cuda_test_files(root)
    steps = default_steps(out, test_files)
    # Nothing from an earlier run may pass for this one's figures (the log is appended to: set-up is in it).
    for stale in ["pytest.xml", "steps.jsonl", "results.md", "results.json", *(s.output for s in steps if s.output)]:
        (out / stale).unlink(missing_ok=True)
    results = []
    for step in steps:
        result = runner.run(step)
        results.append(result)
        with open(out / "steps.jsonl", "a") as handle:
            handle.write(json.dumps(asdict(result)) + "\n")
        log.info("%-16s %-9s %6.1f s  %s", result.name, result.status, result.seconds, result.note)
    report = write_report(
        out,
        results,
        dry_run=dry_run,
        setup_seconds=setup_seconds,
        total_seconds=setup_seconds + time.monotonic() - runner.started,
        command=command,
        test_files=test_files,
    )
    return report["passed"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cmadapter.bench.gpu_check", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="gpu_check_out", help="folder for the JSON, the Markdown report and the log")
    parser.add_argument("--budget", type=float, default=480, help="seconds for the whole run, set-up included")
    parser.add_argument("--setup-seconds", type=float, default=0.0, help="already spent on set-up (by the script)")
    parser.add_argument("--root", default=".", help="the repository (its tests/ folder holds the CUDA tests)")
    parser.add_argument("--command", default="", help="the command line to quote in the report")
    parser.add_argument("--dry-run", action="store_true", help="check every command and collect every CUDA test")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(args.out).resolve()
    passed = run_check(
        out,
        root=Path(args.root).resolve(),
        budget=args.budget,
        dry_run=args.dry_run,
        setup_seconds=args.setup_seconds,
        command=args.command,
    )
    print(f"{'passed' if passed else 'FAILED'}: see {out / 'results.md'}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
