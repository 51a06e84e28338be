"""AttemptPolicy: what happens to a queue message after an attempt, exhaustively, without I/O."""

from __future__ import annotations

import pytest

from recording_pipeline.core.attempts import (
    MAX_REQUEUE_DELAY_SECONDS,
    REQUEUE_MARGIN_SECONDS,
    AttemptPolicy,
    Decision,
    Failure,
    Verdict,
)

POLICY = AttemptPolicy(attempts_per_message=4, requeue_delay_seconds=300)
FAR = 20 * 3600.0  # seconds left before ACS deletes the chunk
NEAR = REQUEUE_MARGIN_SECONDS + 100.0


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_deliveries_up_to_one_below_the_host_s_limit_do_the_work(count: int) -> None:
    assert POLICY.runs(count)


@pytest.mark.parametrize("count", [5, 6, 50])
def test_a_delivery_after_an_unanswered_last_attempt_does_no_work(count: int) -> None:
    assert not POLICY.runs(count)


@pytest.mark.parametrize("count", [1, 2, 3])
def test_an_error_before_the_last_attempt_is_retried_by_the_host(count: int) -> None:
    assert POLICY.decide(Failure.ERROR, count, 0, FAR) == Decision(Verdict.RETRY)


def test_an_error_on_the_last_attempt_with_hours_left_is_requeued_later() -> None:
    assert POLICY.decide(Failure.ERROR, 4, 0, FAR) == Decision(Verdict.REQUEUE_LATER, 300)


@pytest.mark.parametrize("count", [5, 6])
def test_no_answer_is_decided_at_once_whatever_the_count(count: int) -> None:
    assert POLICY.decide(Failure.NO_ANSWER, count, 0, FAR) == Decision(Verdict.REQUEUE_LATER, 300)


@pytest.mark.parametrize(("requeues", "delay"), [(0, 300), (1, 600), (2, 1200), (3, 2400), (4, 3600), (30, 3600)])
def test_the_wait_doubles_up_to_an_hour(requeues: int, delay: int) -> None:
    assert POLICY.decide(Failure.ERROR, 4, requeues, FAR) == Decision(Verdict.REQUEUE_LATER, delay)
    assert delay <= MAX_REQUEUE_DELAY_SECONDS


@pytest.mark.parametrize("failure", [Failure.ERROR, Failure.NO_ANSWER, Failure.OUT_OF_TIME])
def test_near_the_deadline_the_job_is_quarantined_for_an_operator(failure: Failure) -> None:
    assert POLICY.decide(failure, 5 if failure is Failure.NO_ANSWER else 4, 0, NEAR) == Decision(Verdict.QUARANTINE)


def test_a_wait_that_would_end_inside_the_margin_is_not_taken() -> None:
    left = REQUEUE_MARGIN_SECONDS + 299.0
    assert POLICY.decide(Failure.ERROR, 4, 0, left).verdict is Verdict.QUARANTINE
    assert POLICY.decide(Failure.ERROR, 4, 0, left + 1).verdict is Verdict.REQUEUE_LATER


@pytest.mark.parametrize("count", [1, 4, 5])
def test_an_invalid_job_is_quarantined_at_once(count: int) -> None:
    assert POLICY.decide(Failure.INVALID, count, 0, FAR) == Decision(Verdict.QUARANTINE)


@pytest.mark.parametrize("count", [1, 4])
def test_an_attempt_out_of_time_that_moved_the_copy_continues_at_once(count: int) -> None:
    assert POLICY.decide(Failure.OUT_OF_TIME, count, 0, FAR, progressed=True) == Decision(Verdict.CONTINUE)


def test_an_attempt_out_of_time_that_moved_nothing_counts_as_a_failure() -> None:
    assert POLICY.decide(Failure.OUT_OF_TIME, 1, 0, FAR, progressed=False) == Decision(Verdict.RETRY)
    assert POLICY.decide(Failure.OUT_OF_TIME, 4, 0, FAR, progressed=False) == Decision(Verdict.REQUEUE_LATER, 300)


def test_an_expired_deadline_quarantines() -> None:
    assert POLICY.decide(Failure.ERROR, 4, 0, -60.0).verdict is Verdict.QUARANTINE


@pytest.mark.parametrize(("count", "requeues", "made"), [(1, 0, 1), (4, 0, 4), (5, 0, 4), (2, 3, 14)])
def test_attempts_made_count_every_earlier_message_in_full(count: int, requeues: int, made: int) -> None:
    assert AttemptPolicy(4).attempts_made(count, requeues) == made
