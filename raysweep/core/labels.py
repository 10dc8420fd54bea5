"""What a trial and its arm are called in every view and table: `group.variant-sSEED`
(the trial), the same without its seed (its arm), and a tag of the identity values that
tell apart two arms sharing a label."""
from __future__ import annotations

from typing import Iterable

from raysweep.core.trial import TrialRecord


def trial_label(record: TrialRecord) -> str:
    """`group.variant-sSEED` of the record's first label, as `TrialSpec.label` names it."""
    return record.label


def arm_label(record: TrialRecord) -> str:
    """The trial's label without its seed: the name of its arm."""
    return trial_label(record).rsplit("-s", 1)[0]


def arm_tags(records: Iterable[TrialRecord]) -> dict[str, str]:
    """{arm_key: tag} for arms whose label another arm of `records` also has (a run whose
    study changed between re-runs: `resnet_20` at 4 and at 6 epochs): the identity values
    that tell them apart, `epochs=4` (the arm key where more than 3 differ). Arms with a
    label of their own are left out."""
    arms: dict[str, dict[str, TrialRecord]] = {}
    for r in records:
        arms.setdefault(arm_label(r), {}).setdefault(r.arm_key, r)
    tags = {}
    for same in (a for a in arms.values() if len(a) > 1):
        values = {k: _flat(r.spec().identity(seed=False)) for k, r in same.items()}
        names = sorted(set().union(*values.values()))
        differ = [n for n in names if len({repr(v.get(n)) for v in values.values()}) > 1]
        for k, v in values.items():
            tags[k] = k if len(differ) > 3 else ", ".join(f"{n}={v.get(n)}" for n in differ)
    return tags


def distinct_label(record: TrialRecord, tags: dict[str, str], arm: bool = False) -> str:
    """The trial's (or with `arm`, its arm's) label, with its tag from `arm_tags` when
    another arm shares the label: `resnet_20-s0 [epochs=4]`."""
    label = arm_label(record) if arm else trial_label(record)
    return f"{label} [{tags[record.arm_key]}]" if record.arm_key in tags else label


def _flat(value, prefix: str = "") -> dict:
    """A nested identity as {leaf name: value}; TrainConfig's fields keep their own names."""
    if not isinstance(value, dict):
        return {prefix: value}
    out = {}
    for k, v in value.items():
        name = k if prefix in ("", "train") else f"{prefix}.{k}"
        out.update(_flat(v, name))
    return out
