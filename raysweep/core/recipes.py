"""Training recipes (paper 002 §3.4.3, paper 001 Table 3, paper 004 §4).

Every recipe states its peak learning rate at a **global batch of 1024 images per
optimizer step** (paper 002 §3.4.1: 128 per GPU × 8 V100s, gradients averaged by DDP), so
the same study is the same optimisation problem on 1 GPU or 8: the global batch is split
over the workers, and nothing is rescaled behind the user's back. A study that changes
`batch_size` either states the lr for that batch, or asks for `lr_scaling: linear|sqrt`
from `lr_base_batch`; the lr actually used is `TrainConfig.peak_lr`, in every record.

Units: `lr` per optimizer step; `weight_decay` per step (L2 for SGD, decoupled for
AdamW); `warmup_epochs` in epochs; `batch_size` in images per step over all workers.
"""
from __future__ import annotations


from raysweep.core.trial import TrainConfig, rescale

PAPER_GLOBAL_BATCH = 1024   # paper 002 §3.4.1: 128 images per GPU × 8 GPUs

RECIPES: dict[str, dict] = {
    "sgd": dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4,
                warmup_epochs=0, scheduler="cosine"),
    "sgd_ghostnet": dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=4e-5,
                         warmup_epochs=0, scheduler="cosine"),
    "adamw": dict(optimizer="adamw", lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05,
                  warmup_epochs=10, scheduler="warmup_cosine"),
    "adamw_convnext": dict(optimizer="adamw", lr=4e-3, betas=(0.9, 0.999), weight_decay=0.05,
                           warmup_epochs=20, scheduler="warmup_cosine"),
    # paper 002: wd 0.05 for B/16, 0.01 for the tiny mixer (a study sets the latter per model)
    "adamw_mixer": dict(optimizer="adamw", lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05,
                        warmup_epochs=10, scheduler="warmup_cosine"),
}

SCHEDULERS = ("cosine", "warmup_cosine", "multistep", "step_halve_5")
LR_SCALINGS = ("none", "linear", "sqrt")


def resolve(recipe: str, train: dict, val_fraction: float,
            fingerprint: str | None = None) -> TrainConfig:
    """The recipe's values, overridden by every non-null key of `train` (a study's
    training section), as a TrainConfig. `val_fraction` is the study's or the dataset's
    default."""
    values = dict(RECIPES[recipe])
    values.update({k: v for k, v in train.items() if v is not None or k not in values})
    values["recipe"] = recipe
    values["val_fraction"] = val_fraction
    values["data_fingerprint"] = fingerprint
    if values["optimizer"] == "sgd":
        values["betas"] = None
    else:
        values["momentum"] = None
        values["betas"] = tuple(values["betas"])
    if values["dataset"] != "synthetic":
        values["synthetic_classes"] = None
    if values["dataset"] != "imagefolder":
        values["test_fraction"] = None
    # `auto` is the tensor pipeline on every device: one name for one way of training.
    if values.get("pipeline") == "auto":
        values["pipeline"] = "tensor"
    # Warmup only means something to the warmup schedule; other schedules start at full lr.
    if values["scheduler"] != "warmup_cosine":
        values["warmup_epochs"] = 0
    # A warmup longer than a short study would never reach the peak lr.
    values["warmup_epochs"] = min(values["warmup_epochs"], max(values["epochs"] // 5, 0))
    fields = set(TrainConfig.__dataclass_fields__)
    return rescale(TrainConfig(**{k: v for k, v in values.items() if k in fields},
                               peak_lr=values["lr"]))
