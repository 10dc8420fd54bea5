"""A study's sections as types, for the code that reads them (the driver, `show`, the
estimate): each field once, with its unit. The `resources:` section's type,
`ResourcesConfig`, lives with the planning that reads it (`raysweep.core.planning`: core
imports nothing from study); `defaults:` and the grid reach the engine only as each
trial's resolved `TrainConfig`."""
from __future__ import annotations

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
