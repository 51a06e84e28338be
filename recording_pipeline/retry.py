"""One retry policy for every network call: tenacity, exponential backoff with
jitter, ``Retry-After`` honoured, a budget in attempts and in time.

Only AcsTransientError is retried; auth, gone and permanent errors go straight
up so the worker can act on them instead of burning the budget.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from .errors import AcsTransientError

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8
    initial_wait: float = 1.0
    max_wait: float = 60.0
    budget_seconds: float = 600.0

    def retrying(self, what: str) -> AsyncRetrying:
        backoff = wait_exponential_jitter(multiplier=self.initial_wait, max=self.max_wait)

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            hinted = getattr(exc, "retry_after", None) or 0.0
            return float(min(max(backoff(state), hinted), self.max_wait))

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "%s failed (attempt %d), retrying in %.1fs: %s",
                what,
                state.attempt_number,
                state.upcoming_sleep,
                exc,
            )

        return AsyncRetrying(
            retry=retry_if_exception_type(AcsTransientError),
            wait=wait,
            stop=stop_after_attempt(self.attempts) | stop_after_delay(self.budget_seconds),
            before_sleep=before_sleep,
            reraise=True,
        )

    async def call(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        async for attempt in self.retrying(what):
            with attempt:
                return await operation()
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover
