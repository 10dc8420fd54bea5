"""Every error a user can cause, under one base class.

The CLI prints a `RaysweepError` as one line (`raysweep: error: ...`) and exits with
status 2; anything else is a bug and keeps its traceback. A message names the bad value
and what is allowed, on one line. The one other user error is the model registry's
`UnknownModelError` (`models` depends on nothing in raysweep): `USER_ERRORS` names both.
"""
from __future__ import annotations

from models.registry import UnknownModelError


class RaysweepError(ValueError):
    """A user error: bad input, missing data, a damaged file, an impossible request."""


class StudyError(RaysweepError):
    """A study file, override or command-line value that cannot be run."""


class ResourceError(StudyError):
    """A trial shape that the cluster (or any node type it can grow) can never hold."""


class DataError(RaysweepError):
    """The data a study asks for is missing or unreadable."""


class CheckpointError(RaysweepError):
    """A checkpoint that is not a raysweep trial checkpoint, or is damaged."""


class RecordError(RaysweepError):
    """A trial record that is not a valid record of this raysweep's record version."""


class NoRecordsError(RaysweepError):
    """A run folder with no readable trial record."""


class StorageFullError(RaysweepError):
    """The storage a run writes to has no space left (ENOSPC, or a quota)."""


class EstimateError(RaysweepError):
    """A cost estimate that cannot be made (no GPU measured, a dataset of unknown size)."""


class RunLockedError(RaysweepError):
    """Another `raysweep run` holds the run folder."""


USER_ERRORS = (RaysweepError, UnknownModelError)
