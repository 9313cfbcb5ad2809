"""The benchmark commands run (tiny configurations); their figures are never asserted, only their shape."""

import json

import pytest
import torch

from annotation_files import tiny_msrvtt_run
from cmadapter.cli import main


def run_json(capsys, *args):
    assert main(["bench", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_train_step_reports_every_method_against_full(capsys, tiny_weights):
    report = run_json(
        capsys,
        "train-step",
        "--pretrained",
        str(tiny_weights),
        "--methods",
        "full,cross-modal",
        "--precision",
        "fp32",
        "--frames",
        "2",
        "--batch",
        "2",
        "--steps",
        "1",
        "--warmup",
        "1",
        "--rounds",
        "2",
    )
    full, adapter = report["methods"]["full"], report["methods"]["cross-modal"]
    assert full["rounds"] == 2 and len(adapter["step_seconds_all"]) == 2  # one step from each round
    for row in (full, adapter):
        for key in (
            "step_seconds",
            "peak_memory_mb",
            "trainable_params",
            "time_ratio_to_full",
            "memory_ratio_to_full",
            "model_memory_mb",
            "model_memory_ratio_to_full",
            "peak_tensor_memory_mb",
            "tensor_memory_ratio_to_full",
            "step_flops",
            "achieved_flops_per_second",
            "matmul_peak_flops_per_second",
        ):
            assert row[key] > 0, key
    assert full["time_ratio_to_full"] == 1.0 and adapter["trainable_params"] < full["trainable_params"]
    assert adapter["step_flops"] < full["step_flops"]  # no weight gradients for the frozen backbone
    for row in (full, adapter):  # the libraries' share is the same process baseline, below the peak
        assert 0 < row["libraries_memory_mb"] < row["peak_memory_mb"]
    # the tensors' peak holds at least the weights, and full fine-tuning's holds more (gradients, AdamW state)
    assert adapter["peak_tensor_memory_mb"] * 2**20 > 2 * adapter["total_params"]
    assert full["peak_tensor_memory_mb"] > adapter["peak_tensor_memory_mb"]


def test_encode_reports_the_adapter_against_the_plain_backbone(capsys, tiny_weights):
    report = run_json(
        capsys,
        "encode",
        "--pretrained",
        str(tiny_weights),
        "--videos",
        "2",
        "--frames",
        "2",
        "--texts",
        "4",
        "--repeats",
        "1",
        "--precision",
        "fp32",
        "--retrieval-size",
        "20",
    )
    assert report["video_time_ratio"] > 0 and report["plain"]["videos_per_second"] > 0
    assert report["retrieval_size"] == 20 and report["retrieval_seconds"] > 0


def test_loader_reports_delivery_beside_consumption(capsys, tmp_path, tiny_weights):
    config, _ = tiny_msrvtt_run(tmp_path, tiny_weights)
    report = run_json(capsys, "loader", "--config", str(config), "--batches", "2", "--steps", "1")
    assert report["loader_samples_per_second"] > 0 and report["step_samples_per_second"] > 0
    assert isinstance(report["input_bound"], bool)


def test_dry_run_checks_the_arguments_and_builds_nothing(capsys, tmp_path):
    assert main(["bench", "train-step", "--methods", "full,cross-modal", "--precision", "bf16,fp16", "--device",
                 "cuda", "--rounds", "2", "--dry-run"]) == 0  # fmt: skip
    plan = json.loads(capsys.readouterr().out)
    assert plan["dry_run"] and len(plan["runs"]) == 8  # 2 precisions x 2 rounds x 2 methods, none run
    assert main(["bench", "encode", "--device", "cuda", "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["settings"]["device"] == "cuda"
    bad = {
        "fp16 mixed precision needs a GPU": ["train-step", "--precision", "fp16", "--device", "cpu"],
        "unknown backbone 'ViT-Nope'": ["train-step", "--backbone", "ViT-Nope"],
        f"weights file {tmp_path / 'none.pt'} does not exist": ["encode", "--pretrained", str(tmp_path / "none.pt")],
        "has no option 'rank'": ["train-step", "--option", "rank=4"],
        "batch must be at least 1": ["train-step", "--batch", "0"],
        "unknown device 'gpu'": ["encode", "--device", "gpu"],
    }
    for message, args in bad.items():
        assert main(["bench", *args, "--dry-run"]) == 2, args
        assert message in capsys.readouterr().err, args


@pytest.mark.slow
def test_train_step_runs_data_parallel_under_torchrun(capsys, tiny_weights):
    # Smoke test only: two gloo processes step together; the figures are measured in docs/BENCHMARKS.md.
    report = run_json(capsys, "train-step", "--pretrained", str(tiny_weights), "--methods", "full,cross-modal",
                      "--precision", "fp32", "--frames", "2", "--batch", "2", "--steps", "1", "--warmup", "1",
                      "--nproc-per-node", "2")  # fmt: skip
    full, adapter = report["methods"]["full"], report["methods"]["cross-modal"]
    assert full["world_size"] == adapter["world_size"] == 2
    assert report["settings"]["nproc_per_node"] == 2
    assert adapter["allreduce_mb_per_step"] < full["allreduce_mb_per_step"]
    assert adapter["time_ratio_to_full"] > 0


@pytest.mark.parametrize(
    ("flags", "path"),
    [
        ("fpu avx512f avx512_bf16 amx_bf16 amx_tile", "AMX"),
        ("fpu avx512f avx512_bf16", "AVX512-BF16"),
        ("fpu avx2", "none"),
    ],
)
def test_cpu_facts_name_the_bf16_path_from_the_flags(tmp_path, flags, path):
    from cmadapter.bench.machine import cpu_facts

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Some CPU 9000\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    facts = cpu_facts(str(cpuinfo))
    assert facts["cpu"] == "Some CPU 9000" and facts["bf16_path"] == path
    assert facts["torch"] == torch.__version__ and facts["cpu_capability"]
