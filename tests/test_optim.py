"""bert-adam and warmup-cosine-total against the official code's formulas, restated here in plain float64."""

import math

import numpy as np
import pytest
import torch

from cmadapter import CmadapterError
from cmadapter.config import OptimConfig
from cmadapter.training import bert_adam
from cmadapter.training.bert_adam import BertAdam
from cmadapter.training.optim import build_scheduler, warmup_cosine_total

STEPS, MAX_NORM = 20, 30.0
OPTIM = OptimConfig(
    name="bert-adam", schedule="warmup-cosine-total", lr=0.05, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2, warmup=0.1
)


def batches():
    rng = np.random.default_rng(0)
    return [(rng.normal(size=(6, 4)), rng.normal(size=(6, 3))) for _ in range(STEPS)]


def initial():
    rng = np.random.default_rng(1)
    return rng.normal(size=(4, 3)), rng.normal(size=3)


def reference(data):
    """The official rule, written out: no bias correction, decay inside the update, the schedule on
    x = step / total from step 0, clipping of the global gradient norm before the update."""
    w, b = (a.copy() for a in initial())
    m = {"w": np.zeros_like(w), "b": np.zeros_like(b)}
    v = {"w": np.zeros_like(w), "b": np.zeros_like(b)}
    decay = {"w": OPTIM.weight_decay, "b": 0.0}
    b1, b2 = OPTIM.betas
    lrs, clipped = [], 0
    for step, (x, y) in enumerate(data):
        residual = x @ w + b - y  # loss = sum(residual²)
        grads = {"w": 2 * x.T @ residual, "b": 2 * residual.sum(0)}
        norm = math.sqrt(sum(float((g**2).sum()) for g in grads.values()))
        coef = MAX_NORM / (norm + 1e-6)  # torch's clip_grad_norm_
        if coef < 1:
            grads = {k: g * coef for k, g in grads.items()}
            clipped += 1
        progress = step / STEPS
        factor = progress / OPTIM.warmup if progress < OPTIM.warmup else 0.5 * (1 + math.cos(math.pi * progress))
        lr = OPTIM.lr * factor
        lrs.append(lr)
        params = {"w": w, "b": b}
        for k, p in params.items():
            m[k] = b1 * m[k] + (1 - b1) * grads[k]
            v[k] = b2 * v[k] + (1 - b2) * grads[k] ** 2
            update = m[k] / (np.sqrt(v[k]) + OPTIM.eps) + decay[k] * p
            params[k] = p - lr * update
        w, b = params["w"], params["b"]
    return w, b, lrs, clipped


def ours(data, foreach=None, optimizer_class=BertAdam):
    w, b = (torch.tensor(a, requires_grad=True) for a in initial())  # float64
    groups = [
        {"params": [w], "lr": OPTIM.lr, "weight_decay": OPTIM.weight_decay},
        {"params": [b], "lr": OPTIM.lr, "weight_decay": 0.0},
    ]
    options = {"foreach": foreach} if optimizer_class is BertAdam else {}
    optimizer = optimizer_class(groups, lr=OPTIM.lr, betas=OPTIM.betas, eps=OPTIM.eps, **options)
    scheduler = build_scheduler(optimizer, OPTIM, STEPS)
    lrs, after_first = [], None
    for x, y in data:
        loss = ((torch.tensor(x) @ w + b - torch.tensor(y)) ** 2).sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([w, b], MAX_NORM)
        lrs.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if after_first is None:
            after_first = (w.detach().clone(), b.detach().clone())
    return w.detach(), b.detach(), lrs, after_first, optimizer


def test_bert_adam_follows_the_official_formulas_to_1e12():
    data = batches()
    w_ref, b_ref, lrs_ref, clipped = reference(data)
    w, b, lrs, after_first, _ = ours(data)
    assert 5 <= clipped < STEPS  # clipping is in play for part of the run, not all of it
    assert lrs[0] == [0.0, 0.0] and lrs_ref[0] == 0.0
    start_w, start_b = initial()
    assert np.array_equal(after_first[0].numpy(), start_w) and np.array_equal(after_first[1].numpy(), start_b)
    assert np.allclose([group[0] for group in lrs], lrs_ref, rtol=0, atol=1e-15)
    assert np.abs(w.numpy() - w_ref).max() <= 1e-12 and np.abs(b.numpy() - b_ref).max() <= 1e-12
    assert np.abs(w.numpy() - start_w).max() > 0.05  # it moved: the comparison is not between two no-ops


def test_foreach_and_per_tensor_updates_are_bitwise_equal():
    data = batches()
    w1, b1, *_ = ours(data, foreach=True)
    w2, b2, *_ = ours(data, foreach=False)
    assert torch.equal(w1, w2) and torch.equal(b1, b2)


def test_foreach_in_chunks_is_bitwise_the_per_tensor_update(monkeypatch):
    monkeypatch.setattr(bert_adam, "FOREACH_CHUNK_ELEMENTS", 7)
    sizes = [3, 4, 2, 9, 1, 5]
    assert bert_adam._chunks([torch.zeros(n) for n in sizes], 7) == [slice(0, 2), slice(2, 3), slice(3, 4), slice(4, 6)]
    results = []
    for foreach in (True, False):
        generator = torch.Generator().manual_seed(0)
        params = [torch.randn(n, generator=generator, requires_grad=True) for n in sizes]
        optimizer = BertAdam(params, lr=0.1, weight_decay=0.1, foreach=foreach)
        for _ in range(3):
            for p in params:
                p.grad = torch.randn(p.shape, generator=generator)
            optimizer.step()
        results.append(params)
    assert all(torch.equal(a, b) for a, b in zip(*results, strict=True))


def test_bert_adam_is_not_adamw():
    # Bias correction makes AdamW's early steps larger: the same run must end elsewhere.
    data = batches()
    w, *_ = ours(data)
    w_adamw, *_ = ours(data, optimizer_class=torch.optim.AdamW)
    assert (w - w_adamw).abs().max() > 1e-3


def test_state_dict_round_trip_continues_identically():
    data = batches()
    *_, optimizer = ours(data[:10])
    state = optimizer.state_dict()
    assert set(state["state"][0]) == {"exp_avg", "exp_avg_sq"}
    w = torch.zeros(4, 3, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    fresh = BertAdam([{"params": [w]}, {"params": [b]}])
    fresh.load_state_dict(state)
    assert fresh.param_groups[0]["weight_decay"] == OPTIM.weight_decay and fresh.param_groups[1]["weight_decay"] == 0
    assert torch.equal(fresh.state[w]["exp_avg"], optimizer.state[optimizer.param_groups[0]["params"][0]]["exp_avg"])


def test_schedule_matches_the_official_shape():
    assert warmup_cosine_total(0, 100, 0.1) == 0.0
    assert warmup_cosine_total(5, 100, 0.1) == pytest.approx(0.5)
    assert warmup_cosine_total(9, 100, 0.1) == pytest.approx(0.9)
    assert warmup_cosine_total(10, 100, 0.1) == pytest.approx(0.5 * (1 + math.cos(0.1 * math.pi)))  # 0.976
    assert warmup_cosine_total(0, 100, 0.0) == 1.0  # no warm-up: no division by zero
    assert warmup_cosine_total(99, 100, 0.1) < 0.001


@pytest.mark.parametrize("kwargs", [{"betas": (0.9, 1.0)}, {"lr": -1.0}, {"eps": -1e-8}])
def test_bad_hyperparameters_are_clear_errors(kwargs):
    with pytest.raises(CmadapterError, match="bert-adam needs"):
        BertAdam([torch.zeros(2, requires_grad=True)], **kwargs)
