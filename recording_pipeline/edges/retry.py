"""One retry policy for every call to ACS: tenacity, exponential backoff with
jitter, ``Retry-After`` honoured, a budget in tries and in time.

Two measures of moving forward, both given by the caller:

- ``progress`` (bytes kept: whole blocks staged) starts a new *streak*: a fresh
  count, a fresh time budget and the backoff back at its first step. A 2 GB chunk
  at 2 MB/s downloads for about 19 minutes; a reset in minute 11 must resume in
  place, not end the attempt because the first try began more than
  ``budget_seconds`` ago.
- ``received`` (bytes that arrived, kept or not) decides the wait: a try that
  received anything before it failed is retried after the first step's wait, so
  a download that keeps moving never waits long; the backoff grows only over
  tries in a row that received nothing. Such a try still counts against the
  streak's tries and time, so a connection that breaks off before every block is
  whole still ends within the budget.

Only TransientError is retried (ACS's, or a streamed Put Blob's that broke off);
auth, gone and permanent errors go straight up so the worker can act on them
instead of burning the budget.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from recording_pipeline.core.errors import TransientError

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8  # tries in one streak
    initial_wait: float = 1.0
    max_wait: float = 60.0
    budget_seconds: float = 600.0  # of one streak, from its first failing try
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, repr=False, compare=False)

    def retrying(
        self, what: str, progress: Callable[[], int] | None = None, received: Callable[[], int] | None = None
    ) -> AsyncRetrying:
        """``progress``: a count that grows when a try keeps work for good (bytes staged); ``received``: one that
        grows when a try moves at all (bytes that arrived)."""
        streak = _Streak(self, progress, received)

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            hinted = getattr(exc, "retry_after", None) or 0.0
            backoff = self.initial_wait * 2 ** max(0, streak.still - 1) + random.uniform(0, self.initial_wait)
            return float(min(max(backoff, hinted), self.max_wait))

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "%s failed (try %d of this streak), retrying in %.1fs: %s",
                what,
                streak.tries,
                state.upcoming_sleep,
                exc,
                extra={"retry_wait_seconds": round(state.upcoming_sleep or 0.0, 3)},
            )

        return AsyncRetrying(
            retry=retry_if_exception_type(TransientError),
            after=streak.observe,
            wait=wait,
            stop=streak.exhausted,
            before_sleep=before_sleep,
            sleep=self.sleep,
            reraise=True,
        )

    async def call(
        self,
        what: str,
        operation: Callable[[], Awaitable[T]],
        progress: Callable[[], int] | None = None,
        received: Callable[[], int] | None = None,
    ) -> T:
        async for attempt in self.retrying(what, progress, received):
            with attempt:
                return await operation()
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover


class _Streak:
    """The failures since the last try that kept something, and how many in a row received nothing."""

    def __init__(
        self, policy: RetryPolicy, progress: Callable[[], int] | None, received: Callable[[], int] | None
    ) -> None:
        self._policy = policy
        self._progress = progress
        self._received = received
        self._mark = progress() if progress else 0
        self._received_mark = received() if received else 0
        self._started = policy.clock()
        self._first_attempt = 1  # tenacity's attempt number that opened this streak
        self.tries = 0
        self.still = 0  # failed tries in a row that received nothing: the backoff's step
        self._ended = False

    def observe(self, state: RetryCallState) -> None:
        """Called by tenacity after each failed try that may be retried, before its wait and its stop are
        decided (tenacity's ``after``): what the try moved."""
        now = self._policy.clock()
        kept = self._progress() if self._progress is not None else self._mark
        arrived = self._received() if self._received is not None else self._received_mark
        moved = kept != self._mark or arrived != self._received_mark
        if kept != self._mark:
            self._mark = kept
            self._started = now
            self._first_attempt = state.attempt_number
        self._received_mark = arrived
        self.still = 0 if moved else self.still + 1
        self.tries = state.attempt_number - self._first_attempt + 1
        self._ended = self.tries >= self._policy.attempts or now - self._started >= self._policy.budget_seconds

    def exhausted(self, state: RetryCallState) -> bool:
        """Stop when this streak has used its budget (as ``observe`` found it after this try)."""
        return self._ended
