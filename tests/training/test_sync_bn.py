"""BatchNorm over the global batch on CPU (gloo): two processes holding 32 images each
compute the gradients one process computes on all 64, in float64 to rounding error.
(torch's SyncBatchNorm refuses CPU tensors; raysweep.training.sync_bn.GlobalBatchNorm is its CPU
stand-in, and the engine test in test_one_problem.py runs it through Ray Train.)"""
from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

from raysweep.training import sync_bn


def batch():
    gen = torch.Generator().manual_seed(1)
    return (torch.randn(64, 3, 32, 32, generator=gen, dtype=torch.float64),
            torch.randint(0, 10, (64,), generator=gen))


def model():
    """Two conv-BatchNorm-ReLU blocks and a head: BatchNorm's backward is where
    cross-worker statistics could go wrong; a deeper net only repeats it."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, stride=2, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def gradients(net: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in net.named_parameters()}


def rank_gradients(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    net = nn.parallel.DistributedDataParallel(
        sync_bn.convert(model(), torch.device("cpu")).double())
    x, y = batch()
    nn.functional.cross_entropy(net(x[rank::2]), y[rank::2]).backward()
    if rank == 0:
        torch.save(gradients(net.module), out)
    dist.destroy_process_group()


def test_two_ranks_compute_the_one_process_gradients_of_the_global_batch(tmp_path):
    net = model().double()
    x, y = batch()
    nn.functional.cross_entropy(net(x), y).backward()
    alone = gradients(net)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "rank0.pt")
    mp.start_processes(rank_gradients, args=(port, out), nprocs=2, start_method="spawn")
    shared = torch.load(out, weights_only=True)
    assert shared.keys() == alone.keys()
    for name, g in alone.items():
        scale = g.abs().max().item() or 1.0
        assert (shared[name] - g).abs().max().item() <= 1e-9 * scale, name
    # The conversion is complete: no plain BatchNorm2d is left to normalise per worker.
    converted = sync_bn.convert(model(), torch.device("cpu"))
    assert not any(type(m) is nn.BatchNorm2d for m in converted.modules())
