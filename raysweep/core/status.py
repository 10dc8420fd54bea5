"""A trial's status, as its record states it: one value of `Status`. A record file holds
the value (`"completed"`), and a record read back holds the member, equal to that string."""
from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    RUNNING = "running"          # launched, not ended (or its driver died before it could say)
    COMPLETED = "completed"      # trained its whole epoch budget
    STOPPED = "stopped"          # stopped early by ASHA at a rung
    DIVERGED = "diverged"        # a non-finite training loss ended it
    ERRORED = "errored"          # an exception ended it (after Tune's retries)
    INTERRUPTED = "interrupted"  # Ctrl-C or a stopped driver: resumes from its checkpoint

    def __str__(self) -> str:
        return self.value


FINISHED = (Status.COMPLETED, Status.STOPPED, Status.DIVERGED)   # a re-run does not train these again
