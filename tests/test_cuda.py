"""The CUDA code paths: mixed-precision steps (fp16 with the grad scaler, bf16), nccl under torchrun, the
trainer with pinned-memory workers, evaluation, adapter switching and max_memory_allocated.

Every test here is marked ``cuda``: skipped without a GPU (conftest.py), run by benchmarks/gpu_check.sh.
Each is checked against an independent reference (fp32, a plain process, the CPU) rather than only run.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cmadapter import build_model
from cmadapter.config import EvalConfig, OptimConfig
from cmadapter.evaluation.evaluate import EncodedSplit, encode_texts, encode_videos, evaluate, similarity_matrix
from cmadapter.precision import DTYPES
from cmadapter.training.distributed import DistributedContext
from cmadapter.training.memory import peak_memory_mb
from cmadapter.training.optim import build_optimizer
from cmadapter.training.stepper import Stepper
from cmadapter.training.trainer import train
from helpers import perturb, random_video
from toy_data import colour_data, colour_eval
from toy_training import toy_config

pytestmark = pytest.mark.cuda

SCRIPT = Path(__file__).with_name("toy_training.py")
CUDA = torch.device("cuda", 0)


def run_toy(*args: str, processes: int | None = None) -> subprocess.CompletedProcess:
    """toy_training.py in its own process; under ``torchrun --nproc_per_node=processes`` when given."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable]
    if processes is not None:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    return subprocess.run([*launcher, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=300)


def one_step(weights: Path, precision: str, init_scale: float = 2.0**8):
    """A tiny model's training step on the GPU as the trainer runs it; returns the model before and after,
    the gradients divided by the loss scale, the loss and the scaler."""
    torch.manual_seed(0)  # initialised on the CPU, as in the fp32 reference, then moved
    model = build_model(pretrained=weights, method="cross-modal", r=8, shared_dim=16)
    perturb(model.method)
    model.to(CUDA)
    if precision != "fp32":
        model.store_frozen_weights(DTYPES[precision])
    optimizer = build_optimizer(model.method, OptimConfig(lr=1e-3))
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16", init_scale=init_scale)
    stepper = Stepper(model, optimizer, None, scaler, precision, DistributedContext(device=CUDA), 1.0)
    tokens = model.tokenize(["a red video", "a blue video", "a green video", "a dog"])
    frames, mask = random_video(batch=4, frames=3), torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]]).bool()
    before = {k: v.detach().clone() for k, v in model.trainable_parameters().items()}
    if CUDA.type == "cuda":  # as the loader hands batches over: pinned, copied without blocking
        frames, mask = frames.pin_memory(), mask.pin_memory()
    loss = stepper.compute_gradients(tokens, frames, mask)
    scale = scaler.get_scale() if scaler.is_enabled() else 1.0
    grads = {k: v.grad.detach().float() / scale for k, v in model.trainable_parameters().items()}
    stepper.apply_gradients()
    after = {k: v.detach().clone() for k, v in model.trainable_parameters().items()}
    return before, after, grads, loss, scaler


def flat(tensors: dict) -> torch.Tensor:
    return torch.cat([t.flatten().float() for _, t in sorted(tensors.items())])


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_step_follows_the_fp32_step(tiny_weights, precision):
    _, _, reference, reference_loss, _ = one_step(tiny_weights, "fp32")
    before, after, grads, loss, scaler = one_step(tiny_weights, precision)
    assert abs(loss - reference_loss) < 0.05 * abs(reference_loss)
    cosine = torch.nn.functional.cosine_similarity(flat(grads), flat(reference), dim=0)
    assert cosine > 0.99, float(cosine)
    assert all(t.dtype == torch.float32 and t.device == CUDA for t in after.values())  # fp32 masters
    assert not torch.equal(flat(before), flat(after))
    if precision == "fp16":
        assert scaler.get_scale() == 2.0**8  # no overflow at this scale: the step was taken


def test_fp16_overflow_skips_the_step_and_backs_off_the_scale(tiny_weights):
    before, after, _, _, scaler = one_step(tiny_weights, "fp16", init_scale=2.0**100)
    assert torch.equal(flat(before), flat(after))  # the inf gradients were not applied
    assert scaler.get_scale() == 2.0**99


def test_one_process_torchrun_with_nccl_matches_a_plain_run(tiny_weights, tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "nccl").mkdir()
    common = ["grads", "--weights", str(tiny_weights), "--device", "cuda", "--precision", "bf16"]
    plain = run_toy(*common, "--out", str(tmp_path / "plain"))
    assert plain.returncode == 0, plain.stderr[-3000:]
    launched = run_toy(*common, "--out", str(tmp_path / "nccl"), processes=1)
    assert launched.returncode == 0, launched.stderr[-3000:]
    single = torch.load(tmp_path / "plain" / "grads.pt", weights_only=True)
    nccl = torch.load(tmp_path / "nccl" / "grads.pt", weights_only=True)
    assert single["backend"] is None and nccl["backend"] == "nccl" and nccl["world_size"] == 1
    assert abs(single["loss"] - nccl["loss"]) < 1e-4
    assert any(g.abs().sum() > 0 for g in single["grads"].values())
    for key, grad in single["grads"].items():
        assert torch.allclose(grad, nccl["grads"][key], rtol=1e-3, atol=1e-6), key


def test_trainer_on_cuda_with_pinned_memory_workers(tiny_weights, tmp_path):
    torch.cuda.reset_peak_memory_stats(CUDA)
    overrides = {"train.device": "cuda", "train.precision": "bf16", "train.epochs": 2, "data.workers": 2}
    config = toy_config(str(tiny_weights), str(tmp_path), **overrides)
    data = colour_data(build_model(pretrained=tiny_weights, method=None).tokenizer)
    results = train(config, data, progress=False)
    run = tmp_path / "toy"
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1]["global_step"] == 8 and all(s["loss"] == s["loss"] for s in steps)  # no NaN
    peak = results["efficiency"]["peak_memory_mb"]
    assert 0 < peak == torch.cuda.max_memory_allocated(CUDA) / 2**20
    assert results["test"]["t2v"]["R1"] >= 0 and results["efficiency"]["precision"] == "bf16"
    adapter = load_file(run / "best.safetensors")
    assert adapter and all(t.device.type == "cpu" for t in adapter.values())


def test_killed_fp16_run_on_cuda_resumes_to_the_same_weights(tiny_weights, tmp_path):
    common = ["train", "--weights", str(tiny_weights), "--device", "cuda", "--precision", "fp16"]
    straight = run_toy(*common, "--out", str(tmp_path / "a"))
    assert straight.returncode == 0, straight.stderr[-3000:]
    killed = run_toy(*common, "--out", str(tmp_path / "b"), "--kill-after", "6")
    assert killed.returncode == -9, killed.stderr[-3000:]
    resumed = run_toy(*common, "--out", str(tmp_path / "b"), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr
    a = load_file(tmp_path / "a" / "toy" / "best.safetensors")
    b = load_file(tmp_path / "b" / "toy" / "best.safetensors")
    for key in a:  # CUDA reductions may differ in the last bits between runs: a loose tolerance
        assert torch.allclose(a[key], b[key], rtol=0, atol=1e-3), key


def test_evaluation_on_cuda_matches_the_cpu(tiny_weights, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # fp32 against fp32, not TF32
    data = colour_eval(seed=5)
    models = []
    for device in ("cpu", CUDA):
        torch.manual_seed(0)
        model = build_model(pretrained=tiny_weights, method="cross-modal")
        perturb(model.method)
        models.append(model.to(device))
    similarities = []
    for model in models:
        text = encode_texts(model, data.captions, batch_size=4, precision="fp32", progress=False)
        video, mask = encode_videos(model, data.clips, batch_size=3, precision="fp32", workers=2, progress=False)
        similarities.append(similarity_matrix(model, EncodedSplit(text, video, mask), block_size=5))
    # Logits are 100 x cosine: 0.02 is a cosine difference of 2e-4 (kernels sum in other orders).
    assert torch.allclose(similarities[1], similarities[0], rtol=1e-3, atol=0.02)
    metrics = evaluate(models[1], data, EvalConfig(batch_size=3), precision="bf16", workers=2, progress=False)
    assert 0 <= metrics["t2v"]["R1"] <= 100 and 0 <= metrics["v2t"]["R1"] <= 100


def test_adapters_switch_on_a_cuda_model(tiny_weights, tmp_path):
    torch.manual_seed(1)
    other = build_model(pretrained=tiny_weights, method="cross-modal")
    perturb(other.method, seed=3)
    other.save_adapter(tmp_path / "other.safetensors")  # written from the CPU, loaded onto the GPU

    torch.manual_seed(0)
    model = build_model(pretrained=tiny_weights, method="cross-modal").to(CUDA)
    perturb(model.method)
    alone = build_model(pretrained=tiny_weights, adapter=tmp_path / "other.safetensors", device=CUDA)
    plain = build_model(pretrained=tiny_weights, method=None, device=CUDA)
    tokens = model.tokenize(["a red video", "a dog runs"])
    frames = random_video(batch=2, frames=3)

    def features(m):
        with torch.no_grad():
            return torch.cat([m.encode_text(tokens), m.encode_video(frames).flatten(0, 1)])

    first = features(model)
    assert model.load_adapter(tmp_path / "other.safetensors", name="other") == "other"
    assert all(t.device == model.device for t in model.method.trainable_tensors().values())
    assert torch.allclose(features(model), features(alone), atol=1e-5)
    model.set_adapter(None)
    assert torch.allclose(features(model), features(plain), atol=1e-5)
    model.set_adapter("default")
    assert torch.allclose(features(model), first, rtol=0, atol=1e-6)
    assert not torch.allclose(first, features(alone), atol=1e-3)  # the two adapters really differ


def test_peak_memory_is_cudas_max_memory_allocated():
    torch.cuda.reset_peak_memory_stats(CUDA)
    baseline = torch.cuda.memory_allocated(CUDA) / 2**20
    block = torch.empty(256 * 2**20, dtype=torch.uint8, device=CUDA)
    del block
    peak = peak_memory_mb(CUDA)
    assert peak == torch.cuda.max_memory_allocated(CUDA) / 2**20
    assert peak >= baseline + 256 > torch.cuda.memory_allocated(CUDA) / 2**20


def test_train_step_benchmark_measures_the_gpu(tiny_weights):
    from cmadapter.bench.train_step import TrainStepSettings, benchmark

    settings = TrainStepSettings(
        backbone=None, pretrained=str(tiny_weights), frames=2, batch=2, steps=1, warmup=1, device="cuda"
    )
    report = benchmark(settings, ["full", "cross-modal"], ["fp16"])
    assert report["machine"]["gpu"] and report["machine"]["cuda"]
    for row in report["methods"].values():
        assert row["peak_memory_mb"] > 0 and row["libraries_memory_mb"] == 0
        assert row["peak_tensor_memory_mb"] == row["peak_memory_mb"]  # max_memory_allocated is the tensors' peak
    adapter = report["methods"]["cross-modal"]
    assert (
        adapter["memory_ratio_to_full"] < 1
        and adapter["trainable_params"] < report["methods"]["full"]["trainable_params"]
    )
