"""What an operator names on the command line: a call, or one recording of it."""

from __future__ import annotations

from recording_pipeline.core.errors import InvalidEventError, OperatorInputError
from recording_pipeline.core.naming import check_id


def parse_target(target: str) -> tuple[str, str | None]:
    """``callId`` or ``callId/recordingKey`` → (callId, recordingKey or None), both safe as names."""
    parts = target.strip().strip("/").split("/")
    if len(parts) > 2 or not parts[0]:
        raise OperatorInputError(f"{target!r}: expected callId or callId/recordingKey")
    try:
        call_id = check_id(parts[0], "callId")
        rec_key = check_id(parts[1], "recordingKey") if len(parts) == 2 else None
    except InvalidEventError as exc:
        raise OperatorInputError(f"{target!r}: {exc}") from None
    return call_id, rec_key
