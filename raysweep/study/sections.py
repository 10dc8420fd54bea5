"""A study's sections as types, for the code that reads them (the driver, `show`, the
estimate): each field once, with its unit. The `resources:` section's type,
`ResourcesConfig`, lives with the planning that reads it (`raysweep.core.planning`: core
imports nothing from study); `defaults:` and the grid reach the engine only as each
trial's resolved `TrainConfig`."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class AshaConfig:
    """The study's `asha:` section: early stopping by validation top-1, one ASHA per
    setting and epoch budget (engine/rungs.py)."""
    enabled: bool
    grace_period: int           # epochs before the first rung
    reduction_factor: float     # η: 1/η of the trials at a rung go on

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> "AshaConfig":
        """From the checked `asha:` mapping (every key present)."""
        return cls(bool(section["enabled"]), int(section["grace_period"]),
                   section["reduction_factor"])


def milestones(budget: int, grace_period: int, reduction_factor: float) -> list[float]:
    """The epochs at which ASHA may stop a trial of this budget: Ray's rungs
    (`AsyncHyperBandScheduler`'s one bracket, grace_period·η^k, with max_t = budget + 1)
    below the budget, since a rung at the last epoch stops nothing. Computed as Ray
    computes them, without importing Ray (`show` prints them; tests/engine/test_rungs.py
    compares them with Ray's own bracket)."""
    if grace_period > budget:
        return []
    count = int(math.log((budget + 1) / grace_period) / math.log(reduction_factor) + 1)
    return sorted(m for m in (grace_period * reduction_factor ** k for k in range(count))
                  if m < budget)
