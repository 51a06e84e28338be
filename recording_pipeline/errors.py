"""Every exception the pipeline raises, in one hierarchy.

The worker decides what to do from the class alone: retry (Transient), stop and
shout (Configuration/Auth), record the chunk as lost (RecordingGone), or reject
the input for good (InvalidEvent).
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of everything raised on purpose by recording_pipeline."""


class ConfigurationError(PipelineError):
    """A setting is missing or wrong; nothing will work until it is fixed."""


class InvalidEventError(PipelineError):
    """An event or job that can never be processed (rejected, not retried)."""


class UnsafeUrlError(InvalidEventError):
    """A recording URL that credentials must not be sent to."""


class AcsError(PipelineError):
    """A failed call to ACS recording storage. ``status`` is None for network errors."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class AcsTransientError(AcsError):
    """408, 429, 5xx, resets, timeouts, short bodies: worth another try."""


class AcsAuthError(AcsError):
    """401/403: the key, the identity or the signed host is wrong. Retrying will not help."""


class AcsPermanentError(AcsError):
    """Any other 4xx: the request itself is wrong."""


class RecordingGoneError(AcsError):
    """404: ACS no longer has the file (expired, or deleted by someone else)."""


class ArchiveIntegrityError(PipelineError):
    """The committed blob does not match what was downloaded. Never delete after this."""


class AttemptTimeoutError(PipelineError):
    """An attempt ended itself before the host's functionTimeout; its staged blocks stay for the next one."""


class NoAnswerError(PipelineError):
    """An earlier delivery of the message ended without an answer (the process was killed or timed out)."""
