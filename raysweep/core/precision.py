"""`amp: auto` resolved to the precision trials will train in, before it enters a key.

A trial's precision changes its result, so it is part of the trial's identity: `auto`
never reaches a key or a record. It is resolved from where the trials run:

    no GPU (CPU trials)                      off    float32
    GPUs that all compute in bf16            bf16   compute capability 8.0 and later
    GPUs none of which compute in bf16       fp16   V100, T4, ... (loss scaling on)
    GPUs of both kinds                       fp16   the one precision all of them run;
                                                    the driver says so (or set amp)

`raysweep run` reads the GPUs from the connected cluster (each node's `accelerator_type:`
label, the one Ray sets when it starts on an NVIDIA GPU; the driver's own GPU when the
node is this machine); `raysweep show` runs no Ray and resolves for this machine.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass

# Where a GPU driver shows itself (NVIDIA's, AMD's ROCm): without one, torch sees no GPU.
GPU_DRIVER_PATHS = ("/proc/driver/nvidia/gpus", "/dev/nvidiactl", "/dev/kfd")

# Ray's accelerator_type labels (ray.util.accelerators) of GPUs with bf16 tensor cores
# (compute capability ≥ 8.0) and of those without; a label in neither is resolved as
# the GPU that may lack bf16.
BF16_TYPES = frozenset({"A100", "A100-40G", "A100-80G", "A10G", "A10", "A40", "A30", "A16",
                        "A2", "L4", "L40", "L40S", "H100", "H200", "H20", "B200", "B100",
                        "GB200", "GH200", "RTX", "RTXA6000", "RTXA5000", "RTXA4000"})
FP16_TYPES = frozenset({"V100", "P100", "T4", "P4", "K80", "M60", "P40", "Tesla-V100"})
BF16_FROM = (8, 0)   # CUDA compute capability with bf16 tensor cores (Ampere)


@dataclass(frozen=True)
class Gpu:
    """A kind of GPU a trial may land on."""
    kind: str            # Ray's accelerator_type label, or torch's device name
    bf16: bool           # computes in bf16 natively


@dataclass(frozen=True)
class Resolution:
    amp: str             # off | bf16 | fp16: what `auto` means for this study's trials
    why: str             # one line: where the trials run, and why this precision


def gpu_of_capability(kind: str, capability: tuple[int, int]) -> Gpu:
    """A GPU from its CUDA compute capability (`torch.cuda.get_device_capability`)."""
    return Gpu(kind, tuple(capability) >= BF16_FROM)


def gpu_of_type(accelerator_type: str) -> Gpu:
    """A GPU from Ray's accelerator_type label (unknown labels: fp16, which all run)."""
    return Gpu(accelerator_type, accelerator_type in BF16_TYPES)


def resolve_auto(gpus: list[Gpu] | None, where: str) -> Resolution:
    """What `amp: auto` means on `gpus` (None or empty: the trials run on CPUs)."""
    if not gpus:
        return Resolution("off", f"amp: auto → off: {where} has no GPU for the trials "
                                 f"(float32 on CPU)")
    kinds = ", ".join(sorted({g.kind for g in gpus}))
    if all(g.bf16 for g in gpus):
        return Resolution("bf16", f"amp: auto → bf16: {where} trains on {kinds}, which "
                                  f"compute in bf16")
    if not any(g.bf16 for g in gpus):
        return Resolution("fp16", f"amp: auto → fp16: {where} trains on {kinds}, without "
                                  f"bf16 (or of a kind not known to have it)")
    return Resolution("fp16", f"amp: auto → fp16: {where} has GPUs of different kinds "
                              f"({kinds}), and fp16 is the precision all of them run; set "
                              f"amp: bf16 (and keep the trials on bf16 GPUs) to choose bf16")


def local_gpus() -> list[Gpu]:
    """The GPUs of this machine, as torch sees them."""
    if not any(os.path.exists(p) for p in GPU_DRIVER_PATHS):
        return []   # no GPU driver: nothing torch could see, said without importing it (~2.5 s)
    import torch

    if not torch.cuda.is_available():
        return []
    return [gpu_of_capability(torch.cuda.get_device_name(i), torch.cuda.get_device_capability(i))
            for i in range(torch.cuda.device_count())]


@functools.lru_cache(maxsize=1)
def resolve_here() -> Resolution:
    """`auto` on this machine (what `show` reports: it starts no Ray)."""
    return resolve_auto(local_gpus(), "this machine")


def cluster_gpus(nodes: list[dict[str, float]], here: dict[str, float] | None,
                 extra: list[dict[str, float]] = ()) -> list[Gpu]:
    """The GPU kinds of a cluster's nodes (each node's total resources, as Ray reports
    them) and of the node types its autoscaler may add (`extra`). A GPU node without an
    accelerator_type label is this machine's GPU when it is this machine (`here`), else
    a GPU of unknown kind."""
    found = []
    for node in [*nodes, *extra]:
        if node.get("GPU", 0) <= 0:
            continue
        labels = [k.split(":", 1)[1] for k in node if k.startswith("accelerator_type:")]
        if labels:
            found += [gpu_of_type(label) for label in labels]
        elif here is not None and node is here:
            found += local_gpus() or [Gpu("unknown GPU", False)]
        else:
            found.append(Gpu("unknown GPU", False))
    return found
