"""Reference accelerator profiles: what this project measured on a GPU elsewhere, so that
`raysweep show SPACE --gpus 8 --gpu-type h100` estimates a study for GPUs this machine
does not have.

A profile (accelerators.json) holds one reference model's training images/s at several
per-worker batches on that GPU and the aggregate speed of n trials packed on one GPU,
with the device, torch version, date and the raw outputs the figures come from. Any
model's training step at a per-worker batch of b images is then

    step(b) = fixed + b × per_image × flops(model) / flops(reference)

with `fixed` and `per_image` the least-squares line through the measured points. The
fixed part is the launch-bound floor (~10 ms per resnet_20 step on an H100 at any batch)
and is kept as measured for every model: deeper networks launch more kernels, so for
them it is a lower bound. The per-image part scales by FLOPs at the reference's measured
rate, the stated efficiency (`effective_tflops`, printed with the estimate as TFLOP/s
and a share of the GPU's dense bf16 peak): larger models usually use a GPU better, so for
them it is an upper bound. An evaluation step is a third of a training step (the forward
pass of forward + backward). A trial packed n to a GPU (`gpus_per_worker` 1/n) runs at
the measured aggregate over n of one trial's speed, never faster than alone.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from raysweep.errors import EstimateError

PROFILES_FILE = Path(__file__).with_name("accelerators.json")
EVAL_SHARE = 1 / 3     # an evaluation step's time over a training step's, same batch
CPUS_PER_GPU = 16      # a planned GPU node's cores per GPU (the profiles' machines had 16)


@dataclass(frozen=True)
class AcceleratorProfile:
    name: str                               # what --gpu-type takes ("h100")
    device: str                             # torch.cuda.get_device_name() there
    accelerator_type: str                   # Ray's name for it (resource accelerator_type:H100)
    torch: str                              # the torch version measured with
    measured_on: str                        # ISO date
    sources: tuple[str, ...]                # the raw outputs, in this repository
    model: str                              # the reference model
    classes: int                            # its classifier's classes when measured
    precision: str                          # how it trained ("bf16 autocast, channels_last")
    train_images_per_s: dict[int, float]    # per-worker batch (images) -> images/s
    peak_tflops: float                      # the GPU's dense bf16 peak (data sheet)
    packed_aggregate: dict[int, float]      # trials per GPU -> aggregate speed over one alone

    @functools.cached_property
    def line(self) -> tuple[float, float]:
        """(fixed seconds per step, seconds per image): least squares through the
        measured (batch, seconds per step) points."""
        xs = list(self.train_images_per_s)
        ys = [b / rate for b, rate in self.train_images_per_s.items()]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = (sum((x - mx) * (y - my) for x, y in zip(xs, ys))
                 / sum((x - mx) ** 2 for x in xs))
        return my - slope * mx, slope

    @functools.cached_property
    def reference_flops(self) -> int:
        from models import model_facts

        return model_facts(self.model, num_classes=self.classes).flops

    @property
    def effective_tflops(self) -> float:
        """Training FLOPs per second the reference's per-image part stands for (forward
        + backward ≈ 3 forward passes; a multiply-add counts 2)."""
        return 3 * self.reference_flops / self.line[1] / 1e12

    def train_step(self, batch: float, flops: int) -> float:
        fixed, per_image = self.line
        return fixed + batch * per_image * flops / self.reference_flops

    def packed_speed(self, gpu_share: float) -> float:
        """One trial's speed, relative to alone on the GPU, when it holds `gpu_share` of
        one: the measured aggregate over the trials packed (the nearest measured count
        at or below 1/share)."""
        if not gpu_share or gpu_share >= 1:
            return 1.0
        per_gpu = round(1 / gpu_share)
        n = max((k for k in self.packed_aggregate if k <= per_gpu), default=1)
        return min(1.0, self.packed_aggregate[n] / n)


@functools.lru_cache(maxsize=None)
def profiles() -> dict[str, AcceleratorProfile]:
    raw = json.loads(PROFILES_FILE.read_text())
    return {name: AcceleratorProfile(
        name, p["device"], p["accelerator_type"], p["torch"], p["measured_on"], tuple(p["sources"]), p["model"],
        p["classes"], p["precision"],
        {int(b): float(r) for b, r in p["train_images_per_s"].items()}, float(p["peak_tflops"]),
        {int(n): float(a) for n, a in p["packed_aggregate"].items()})
        for name, p in raw.items()}


def profile(name: str) -> AcceleratorProfile:
    found = profiles().get(name.lower())
    if found is None:
        raise EstimateError(f"--gpu-type {name!r} has no profile; allowed: "
                            f"{', '.join(sorted(profiles()))}")
    return found
