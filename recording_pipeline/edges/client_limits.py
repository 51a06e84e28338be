"""How long the app waits for Azure Storage, and how often it asks again: chosen, not inherited.

azure-storage-blob and azure-storage-queue default to a 20 s connect timeout, a
60 s read timeout and ``ExponentialRetry(initial_backoff=15, increment_base=3,
retry_total=3)`` (``_shared/constants.py``, ``_shared/policies.py``; Microsoft
Learn, "Implement a retry policy with Python"): waits of about 18, 24 and 42 s, so
one request that keeps failing takes minutes. A read timeout counts from the end
of the request's body (aiohttp ``ClientRequest.write_bytes`` starts it), so a slow
streamed body is never cut short by it. Ours:

- archive and state containers: connect 10 s, read 60 s, 3 retries after about
  3, 5 and 9 s. A stalled answer is given up on within ~4 min at worst (not
  ~5.5), a 503 ServerBusy costs seconds, not a minute. The read stays at the
  SDK's 60 s: the service's longest answer (Put Block List may take 60 s).
- chunk queue: connect 5 s, read 5 s, 2 retries after about 2.5 and 4.5 s.
  Put Message answers in milliseconds, and the webhook must answer Event Grid
  within 30 s (it gives its writes 25 s, see app.webhook); ~23 s at worst.
- the operator commands (cli.storage): connect 4 s, read 15 s, 1 retry after
  about 3 s. Someone is waiting at a terminal: an account that does not answer is
  named within about ten seconds, not after minutes.

A request given up on is an ordinary failure: the attempt ends and the host delivers the message again (the
transfer resumes from its staged blocks); the webhook answers 503 and Event Grid retries. ACS's limits are the
aiohttp client's (edges.acs: 10 s connect, ``ACS_READ_TIMEOUT_SECONDS`` read, no total: a 2 GB download takes
~19 min) and the retry policy's (edges.retry).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StorageClientLimits:
    connect_seconds: float
    read_seconds: float
    retries: int
    first_backoff_seconds: float  # ExponentialRetry's initial_backoff; the n-th retry waits it + base ** n
    backoff_base: float
    jitter_seconds: float

    def waits(self) -> list[float]:
        """The nominal wait before each retry (the SDK adds ± jitter): ``initial_backoff + increment_base ** n``."""
        return [self.first_backoff_seconds + self.backoff_base**n for n in range(1, self.retries + 1)]

    def worst_case_seconds(self) -> float:
        """The longest one request can take when every try times out."""
        tries = self.retries + 1
        return (
            tries * max(self.connect_seconds, self.read_seconds)
            + sum(self.waits())
            + self.retries * self.jitter_seconds
        )

    def options(self) -> dict[str, Any]:
        """Keyword arguments of a blob or queue service client: the transport's timeouts, and the settings of the
        ExponentialRetry each async client builds from its keyword arguments (``retry_policy = ... or
        ExponentialRetry(**kwargs)`` in its constructor: the documented way to configure it by keyword)."""
        return {
            "connection_timeout": self.connect_seconds,
            "read_timeout": self.read_seconds,
            "retry_total": self.retries,
            "initial_backoff": self.first_backoff_seconds,
            "increment_base": self.backoff_base,
            "random_jitter_range": self.jitter_seconds,
        }


ARCHIVE = StorageClientLimits(
    connect_seconds=10, read_seconds=60, retries=3, first_backoff_seconds=1, backoff_base=2, jitter_seconds=1
)
QUEUE = StorageClientLimits(
    connect_seconds=5, read_seconds=5, retries=2, first_backoff_seconds=0.5, backoff_base=2, jitter_seconds=0.5
)
OPERATOR = StorageClientLimits(
    connect_seconds=4, read_seconds=15, retries=1, first_backoff_seconds=1, backoff_base=2, jitter_seconds=1
)
ACS_CONNECT_SECONDS = 10.0
