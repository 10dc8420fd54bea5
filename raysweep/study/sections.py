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
    by: str = "trial"           # what a rung promotes or stops: a trial, or an arm (its seeds)

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> "AshaConfig":
        """From the checked `asha:` mapping (every key present)."""
        return cls(bool(section["enabled"]), int(section["grace_period"]),
                   section["reduction_factor"], section["by"])

    @property
    def by_arm(self) -> bool:
        """Seed-aware ASHA runs: rungs judge arms, not trials."""
        return self.enabled and self.by == "arm"


LOOK_GROWTH = 1.5   # seeds grow by this factor from one possible look to the next


@dataclass(frozen=True)
class SeedPlan:
    """The study's `seeds: {min, max, detect}`: adaptive seeds for ablation groups
    (raysweep.decide.seeding decides with it)."""
    min: int = 3            # seeds every arm runs (the first look)
    max: int = 10           # seeds a variant and its baseline may reach
    detect: float = 0.5     # smallest Δ top-1 worth detecting, in points of accuracy

    @property
    def seeds(self) -> list[int]:
        """Every seed the plan may run, in the order they run."""
        return list(range(self.max))

    @property
    def looks(self) -> list[int]:
        """The seed counts a variant may be looked at: min, then about half as many
        again each time (at least one more), and max."""
        found = [self.min]
        while found[-1] < self.max:
            found.append(min(self.max, max(found[-1] + 1, math.ceil(found[-1] * LOOK_GROWTH))))
        return found
