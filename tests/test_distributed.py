"""Process-group set-up: a launcher's single process joins a group too, so it runs the collectives."""

import socket

import torch
import torch.distributed as dist

from cmadapter.training.distributed import (
    DistributedContext,
    gather_with_grad,
    init_distributed,
    shutdown_distributed,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_without_a_launcher_no_group_is_joined(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    context = init_distributed("cpu")
    assert not context.enabled and not context.joined and not dist.is_initialized()


def test_one_process_under_a_launcher_joins_a_group_and_gathers(monkeypatch):
    # What torchrun --nproc_per_node=1 sets: the run must go through the same collectives as N processes.
    env = {
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    context = init_distributed("cpu")
    try:
        assert context.joined and context.enabled and context.world_size == 1
        assert dist.get_backend() == "gloo"
        x = torch.arange(6.0).view(3, 2).requires_grad_()
        gathered = gather_with_grad(x * 2, context)
        assert torch.equal(gathered, x.detach() * 2)
        gathered.sum().backward()
        assert torch.equal(x.grad, torch.full((3, 2), 2.0))
    finally:
        shutdown_distributed(context)
    assert not dist.is_initialized()


def test_a_context_made_by_hand_runs_no_collectives():
    assert not DistributedContext().enabled
