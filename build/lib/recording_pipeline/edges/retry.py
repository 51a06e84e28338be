"""One retry policy for every call to ACS: tenacity, exponential backoff with
jitter, ``Retry-After`` honoured, a budget in tries and in time.

The budget is per *streak* of failures: a try that moved the work forward (a
download that received bytes before its connection broke) starts a new streak,
with a fresh count, a fresh time budget and the backoff back at its first
step. A 2 GB chunk at 2 MB/s downloads for about 19 minutes; a reset in minute
11 must resume in place, not end the attempt because the first try began more
than ``budget_seconds`` ago.

Only AcsTransientError is retried; auth, gone and permanent errors go straight
up so the worker can act on them instead of burning the budget.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from recording_pipeline.core.errors import AcsTransientError

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8  # tries in one streak
    initial_wait: float = 1.0
    max_wait: float = 60.0
    budget_seconds: float = 600.0  # of one streak, from its first failing try
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)

    def retrying(self, what: str, progress: Callable[[], int] | None = None) -> AsyncRetrying:
        """``progress``: a count that grows when a try moves the work forward (bytes received)."""
        streak = _Streak(self, progress)

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            hinted = getattr(exc, "retry_after", None) or 0.0
            backoff = self.initial_wait * 2 ** (streak.tries - 1) + random.uniform(0, self.initial_wait)
            return float(min(max(backoff, hinted), self.max_wait))

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "%s failed (try %d of this streak), retrying in %.1fs: %s",
                what,
                streak.tries,
                state.upcoming_sleep,
                exc,
            )

        return AsyncRetrying(
            retry=retry_if_exception_type(AcsTransientError),
            wait=wait,
            stop=streak.exhausted,
            before_sleep=before_sleep,
            reraise=True,
        )

    async def call(
        self, what: str, operation: Callable[[], Awaitable[T]], progress: Callable[[], int] | None = None
    ) -> T:
        async for attempt in self.retrying(what, progress):
            with attempt:
                return await operation()
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover


class _Streak:
    """The failures since the last try that made progress."""

    def __init__(self, policy: RetryPolicy, progress: Callable[[], int] | None) -> None:
        self._policy = policy
        self._progress = progress
        self._mark = progress() if progress else 0
        self._started = policy.clock()
        self._first_attempt = 1  # tenacity's attempt number that opened this streak
        self.tries = 0

    def exhausted(self, state: RetryCallState) -> bool:
        """Called by tenacity after each failed try: stop when this streak has used its budget."""
        now = self._policy.clock()
        if self._progress is not None and self._progress() != self._mark:
            self._mark = self._progress()
            self._started = now
            self._first_attempt = state.attempt_number
        self.tries = state.attempt_number - self._first_attempt + 1
        return self.tries >= self._policy.attempts or now - self._started >= self._policy.budget_seconds
