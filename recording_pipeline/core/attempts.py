"""What to do with a queue message after an attempt: a pure decision.

The host counts deliveries and poisons a message on its own once the count
passes ``maxDequeueCount`` (see host_rules). So the app decides first:

- an attempt that failed before the app's last one: **retry** (raise; the host
  shows the message again after host.json's ``visibilityTimeout``);
- an attempt that ended itself before ``functionTimeout`` after moving the copy
  forward: **continue** at once with a fresh message, so a long transfer is not
  charged a delivery for every stretch of time it needs;
- the last attempt failed, or an earlier one ended without an answer (the
  process was killed, timed out, ran out of memory): **requeue later** as a
  fresh message, the wait doubling each time, while that wait still ends well
  before ACS's deadline — an outage is waited out, not poisoned;
- otherwise, or when the job itself is invalid: **quarantine**, with the error,
  for an operator and ``replay --poison``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

REQUEUE_MARGIN_SECONDS = 1800  # leave an operator half an hour before ACS deletes the chunk
MAX_REQUEUE_DELAY_SECONDS = 3600


class Verdict(StrEnum):
    RETRY = "retry"
    CONTINUE = "continue"
    REQUEUE_LATER = "requeue-later"
    QUARANTINE = "quarantine"


class Failure(StrEnum):
    """How an attempt ended, as far as the decision cares."""

    ERROR = "error"  # an exception worth trying again (network, storage, ACS, configuration)
    INVALID = "invalid"  # the job can never be processed
    OUT_OF_TIME = "out-of-time"  # the attempt ended itself before functionTimeout
    NO_ANSWER = "no-answer"  # an earlier delivery ended without any (killed, timed out)


@dataclass
class AttemptProgress:
    """What one attempt moved forward; the transfer counts the bytes it staged."""

    staged_bytes: int = 0


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    delay_seconds: int = 0


@dataclass(frozen=True)
class AttemptPolicy:
    attempts_per_message: int  # deliveries with real work: host maxDequeueCount - 1
    requeue_delay_seconds: int = 300

    def runs(self, dequeue_count: int) -> bool:
        """Whether this delivery may do real work; beyond it the previous one ended without an answer."""
        return dequeue_count <= self.attempts_per_message

    def attempts_made(self, dequeue_count: int, requeues: int) -> int:
        """Attempts so far over all of the job's messages: each earlier message had all of its own."""
        return self.attempts_per_message * requeues + min(dequeue_count, self.attempts_per_message)

    def decide(
        self, failure: Failure, dequeue_count: int, requeues: int, seconds_left: float, progressed: bool = False
    ) -> Decision:
        if failure is Failure.INVALID:
            return Decision(Verdict.QUARANTINE)
        if failure is Failure.OUT_OF_TIME and progressed:
            return Decision(Verdict.CONTINUE)
        if failure is not Failure.NO_ANSWER and dequeue_count < self.attempts_per_message:
            return Decision(Verdict.RETRY)
        delay = self.requeue_delay(requeues)
        if seconds_left - delay < REQUEUE_MARGIN_SECONDS:
            return Decision(Verdict.QUARANTINE)
        return Decision(Verdict.REQUEUE_LATER, delay)

    def requeue_delay(self, requeues: int) -> int:
        return int(min(self.requeue_delay_seconds * 2 ** min(requeues, 20), MAX_REQUEUE_DELAY_SECONDS))
