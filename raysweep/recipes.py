"""Training recipes (seed 002 §3.4.3, seed 001 Table 3, seed 004 §4).

Units: `lr` is per 128 images per worker (the worker loop scales it linearly with the
batch size); `weight_decay` is the decoupled (AdamW) or L2 (SGD) coefficient per step;
`warmup_epochs` is in epochs.
"""
from __future__ import annotations

RECIPES: dict[str, dict] = {
    "sgd": dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4,
                warmup_epochs=0, scheduler="cosine"),
    "sgd_ghostnet": dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=4e-5,
                         warmup_epochs=0, scheduler="cosine"),
    "adamw": dict(optimizer="adamw", lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05,
                  warmup_epochs=10, scheduler="warmup_cosine"),
    "adamw_convnext": dict(optimizer="adamw", lr=4e-3, betas=(0.9, 0.999), weight_decay=0.05,
                           warmup_epochs=20, scheduler="warmup_cosine"),
    # seed 002: wd 0.05 for B/16, 0.01 for the tiny mixer (a study sets the latter per model)
    "adamw_mixer": dict(optimizer="adamw", lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05,
                        warmup_epochs=10, scheduler="warmup_cosine"),
}

SCHEDULERS = ("cosine", "warmup_cosine", "multistep", "step_halve_5")


def resolve(recipe: str, train: dict) -> dict:
    """The recipe's values, overridden by every non-null key of `train`."""
    out = dict(RECIPES[recipe])
    out.update({k: v for k, v in train.items() if v is not None or k not in out})
    out["recipe"] = recipe
    # Warmup only means something to the warmup schedule; other schedules start at full lr.
    if out["scheduler"] != "warmup_cosine":
        out["warmup_epochs"] = 0
    # A warmup longer than a short study would never reach the peak lr.
    out["warmup_epochs"] = min(out["warmup_epochs"], max(out["epochs"] // 5, 0))
    return out
