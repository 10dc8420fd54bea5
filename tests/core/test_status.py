"""A record's status is one `Status`: read back as the member, written as its value, and
a record with any other status is refused in one line."""
from __future__ import annotations

import json

import pytest

from raysweep.core.status import FINISHED, Status
from raysweep.core.trial import TrialRecord
from raysweep.errors import RecordError
from support.factories import record


@pytest.mark.parametrize("status", list(Status))
def test_every_status_round_trips_through_a_record_file(status):
    written = json.dumps(record(status=status).to_dict())
    assert json.loads(written)["status"] == status.value
    back = TrialRecord.from_dict(json.loads(written))
    assert back.status is status and f"{back.status}" == status.value
    assert back.finished == (status in FINISHED)


def test_a_record_with_an_unknown_status_is_refused():
    data = json.loads(json.dumps(record().to_dict()))
    data["status"] = "finished"
    with pytest.raises(RecordError, match="status is 'finished'; allowed: running, completed"):
        TrialRecord.from_dict(data)
