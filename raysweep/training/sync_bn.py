"""BatchNorm over the global batch (`sync_bn: true`): every worker normalises with the
mean and variance of all workers' rows, so a trial on W workers computes what it would
compute on one worker with the whole global batch.

On CUDA this is `torch.nn.SyncBatchNorm` (NCCL). torch's SyncBatchNorm refuses CPU
tensors, so on CPU (gloo) `GlobalBatchNorm` does the same with a differentiable
all-reduce of the per-channel sums: its backward all-reduces the gradients of those sums,
which is what SyncBatchNorm's backward computes.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn


class AllReduceSum(torch.autograd.Function):
    """Σ over workers, differentiable: the gradient of a sum every worker uses is the sum
    of their gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        out = grad.clone()
        dist.all_reduce(out)
        return out


class GlobalBatchNorm(nn.BatchNorm2d):
    """`nn.BatchNorm2d` whose training statistics are over every worker's rows."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1):
            return super().forward(x)
        # Two passes (the global mean, then the sum of squared deviations from it): the
        # one-pass E[x²] − E[x]² loses the variance to cancellation in float32.
        channels = x.shape[1]
        local = torch.cat([x.sum((0, 2, 3)), x.new_full((1,), x.numel() / channels)])
        total = AllReduceSum.apply(local)
        count = total[-1]
        mean = total[:channels] / count
        centred = x - mean[None, :, None, None]
        var = AllReduceSum.apply((centred * centred).sum((0, 2, 3))) / count
        if self.track_running_stats:
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 0.1
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * count / (count - 1), alpha=m)
                self.num_batches_tracked.add_(1)
        out = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            out = out * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return out


def convert(model: nn.Module, device: torch.device) -> nn.Module:
    """The model with every BatchNorm2d computing over the global batch."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _swap(model)


def _swap(module: nn.Module) -> nn.Module:
    if type(module) is nn.BatchNorm2d:
        like = module.weight if module.affine else module.running_mean
        out = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats, device=like.device, dtype=like.dtype)
        out.load_state_dict(module.state_dict())
        return out
    for name, child in module.named_children():
        setattr(module, name, _swap(child))
    return module
