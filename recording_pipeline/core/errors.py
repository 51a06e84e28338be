"""Every exception the pipeline raises, in one hierarchy.

The class says what went wrong; what happens next also depends on where it was
raised and when. The chunk steps turn RecordingGoneError (ACS answered 404) into
a fact, the source gone, and the lifecycle then looks for another attempt's
copy or records the chunk lost; the webhook rejects an InvalidEventError event
for good, and answers 401 or 503 to the delivery-auth errors. An exception that
ends an attempt becomes a core.attempts Failure in the worker (InvalidEventError:
invalid; AttemptTimeoutError: out of time; any other: an error worth another
try), and AttemptPolicy.decide weighs it with the delivery (``failure``,
``dequeue_count``, ``requeues``, ``seconds_left``, ``progressed``): retry,
continue, requeue later, or quarantine. The edges translate what their libraries
raise (aiohttp, azure-core, PyJWT) into these, so nothing above them handles a
library's exception.
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


class TransientError(PipelineError):
    """Worth another try of the same operation, soon: the one family edges.retry's policy retries. Each kind
    below says which side failed (ACS, the source; Azure Storage, the sink)."""


class InterruptedOperationError(PipelineError):
    """A BaseException other than the process's own shutdown reached the boundary of an invocation: a task
    inside it was cancelled although the invocation was not (a connection reset cancels the task writing a
    request body), or a library raised one. It ends the attempt as an ordinary failure; let out, it would end the
    invocation without any answer to the host (see app.boundary)."""


# --- ACS recording storage ---------------------------------------------------------------------


class AcsError(PipelineError):
    """A failed call to ACS recording storage. ``status`` is None for network errors."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class AcsTransientError(AcsError, TransientError):
    """408, 429, 5xx, resets, timeouts, short bodies: worth another try."""


class AcsAuthError(AcsError):
    """401/403: the key, the identity or the signed host is wrong. Retrying will not help."""


class AcsPermanentError(AcsError):
    """Any other 4xx: the request itself is wrong."""


class RecordingGoneError(AcsError):
    """404: ACS no longer has the file (expired, or deleted by someone else)."""


# --- the archive and the queue -----------------------------------------------------------------


NO_CREDENTIAL = "NoCredential"  # StorageError.code when no identity could get a token: nothing reached the service


class StorageError(PipelineError):
    """A request to Azure Storage (the archive or the queue) failed; another attempt may succeed."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class StorageTransientError(StorageError, TransientError):
    """A request whose body the SDK cannot send again (a Put Blob streamed from the download) failed with no
    answer, 408, 429 or 5xx: the whole file is downloaded and sent again, as a download that broke off is."""


class ContainerNotFoundError(StorageError):
    """The archive container does not exist (operator commands never create it)."""


class BlobArchivedError(StorageError):
    """The blob is in the archive access tier: it must be rehydrated before it can be read."""


class BlobTooLargeError(StorageError):
    """A blob read whole (a manifest, a metadata document) is larger than such a document can be."""


class HoldRefusedError(StorageError):
    """The storage refused a legal hold (Azurite implements none; the identity lacks Storage Blob Data Owner; the
    container has no version-level immutability): nothing was recorded for it."""


class ConcurrentUpdateError(StorageError):
    """A document changed under every one of our conditional writes."""


class PublishError(PipelineError):
    """Outbound events could not be delivered to the Event Grid topic (after the client's own retries)."""


class ArchiveIntegrityError(PipelineError):
    """The committed blob does not match what was downloaded. Never delete after this."""


# --- attempts ----------------------------------------------------------------------------------


class AttemptTimeoutError(PipelineError):
    """An attempt ended itself before the host's functionTimeout; its staged blocks stay for the next one."""


class NoAnswerError(PipelineError):
    """An earlier delivery of the message ended without an answer (the process was killed or timed out)."""


# --- the webhook and the operator --------------------------------------------------------------


class DeliveryAuthError(PipelineError):
    """The request does not carry a token we accept (401). Never says more than the client needs."""


class DeliveryAuthUnavailable(DeliveryAuthError):
    """We cannot check the token now (keys unreachable, or a refresh just happened): 503, so Event Grid retries.

    Event Grid does not retry a 401; answering it for our own trouble would dead-letter real events.
    """


class OperatorInputError(PipelineError):
    """An argument the operator gave cannot name anything in the archive."""


# --- handing recordings over -------------------------------------------------------------------


class ExportIntegrityError(PipelineError):
    """A file read from the archive for a bag is not what its chain-of-custody record says: the bag is not
    finished. ``problems`` names each chunk and what differs."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(f"{len(problems)} file(s) differ from their chain-of-custody records: " + "; ".join(problems))
        self.problems = problems


class ExportTargetError(OperatorInputError):
    """The export's target cannot take this bag: it holds a finished bag, another export, or something else."""


class BagLayoutError(PipelineError):
    """A name cannot go into a bag as it is (a payload path outside ``data/``, a bag-info label with a colon)."""
