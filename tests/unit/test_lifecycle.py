"""core.lifecycle, exhaustively: every state an attempt can reach, under every observation each step can make.

The walk starts where an attempt starts (knowing nothing; with or without a
delete location) and follows, for each step, everything that step can observe
in the world. Over all reachable states it checks the rules that keep a
recording safe, and that every path ends in DONE.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import pytest

from recording_pipeline.core.lifecycle import (
    ChunkFacts,
    Claim,
    Copy,
    Lease,
    Media,
    Metadata,
    Outcome,
    Source,
    Step,
    next_step,
    outcome,
)

STARTS = (ChunkFacts(source=Source.PRESENT), ChunkFacts(source=Source.NOTHING_TO_DELETE))


def observations(step: Step, facts: ChunkFacts) -> Iterator[ChunkFacts]:
    """Everything performing ``step`` can report (an exception ends the attempt and is not a state)."""
    if step is Step.FETCH_METADATA:
        # Created here (nothing else of the chunk can exist), or found: created by another attempt.
        yield facts.replace(metadata=Metadata.KNOWN, claim=Claim.MINE, media=Media.ABSENT)
        yield facts.replace(metadata=Metadata.KNOWN, claim=Claim.FRESH)
        yield facts.replace(metadata=Metadata.KNOWN, claim=Claim.STALE)
        yield facts.replace(source=Source.GONE)  # 404 from ACS, no archived metadata
    elif step is Step.LOOK_UP_MEDIA:
        for media in (Media.ABSENT, Media.COMMITTED, Media.VERIFIED):
            yield facts.replace(media=media)
            if facts.source is Source.PRESENT:  # committed by an attempt that found ACS stated no size
                yield facts.replace(media=media, source=Source.UNPROVABLE)
    elif step is Step.LEASE:
        yield facts.replace(lease=Lease.HELD, media=Media.UNKNOWN)
        yield facts.replace(lease=Lease.ELSEWHERE)
    elif step is Step.LEAVE_TO_HOLDER:
        yield facts.replace(left_to_holder=True)
    elif step is Step.COPY:
        yield facts.replace(copied=True)
        if facts.source is Source.PRESENT:
            yield facts.replace(copied=True, source=Source.UNPROVABLE)
        yield facts.replace(source=Source.GONE)
        if facts.lease is Lease.NOT_TRIED:  # under the claim: a copy that runs long takes the lease meanwhile
            yield facts.replace(copied=True, lease=Lease.HELD)
            yield facts.replace(copied=True, media=Media.COMMITTED)  # ... and one block is created whole, at once
    elif step is Step.COMMIT:
        yield facts.replace(media=Media.COMMITTED)
    elif step is Step.VERIFY:
        yield facts.replace(media=Media.VERIFIED)
    elif step is Step.INDEX:
        yield facts.replace(indexed=True)
    elif step is Step.DELETE_SOURCE:
        yield facts.replace(source=Source.DELETED)
    elif step is Step.RECORD:
        yield facts.replace(recorded=True)
    elif step is Step.FIND_COPY:
        yield facts.replace(copy=Copy.FOUND)
        yield facts.replace(copy=Copy.NONE)
    elif step is Step.RECORD_LOST:
        yield facts.replace(lost_recorded=True)
    else:  # pragma: no cover
        raise AssertionError(step)


def reachable() -> dict[ChunkFacts, Step]:
    seen: dict[ChunkFacts, Step] = {}
    todo = deque(STARTS)
    while todo:
        facts = todo.popleft()
        if facts in seen:
            continue
        step = seen[facts] = next_step(facts)
        if step is not Step.DONE:
            todo.extend(observations(step, facts))
    return seen


STATES = reachable()


def test_the_walk_covers_every_step() -> None:
    assert set(STATES.values()) == set(Step)
    assert len(STATES) > 40


@pytest.mark.parametrize("facts", [f for f, s in STATES.items() if s is Step.DELETE_SOURCE])
def test_the_source_is_deleted_only_after_the_copy_is_proved(facts: ChunkFacts) -> None:
    """VERIFIED: the custody record, written once in the archive, exists."""
    assert facts.media is Media.VERIFIED and facts.indexed and facts.source is Source.PRESENT


@pytest.mark.parametrize("facts", [f for f, s in STATES.items() if s is Step.COPY])
def test_media_is_copied_only_under_the_claim_or_the_lease_into_an_empty_place(facts: ChunkFacts) -> None:
    assert facts.media is Media.ABSENT and not facts.copied
    if facts.claim is Claim.MINE:
        assert facts.lease is Lease.NOT_TRIED  # a big copy takes the lease itself, before its first block
    else:
        assert facts.lease is Lease.HELD and facts.claim is Claim.STALE  # a fresh claimer may still be copying


@pytest.mark.parametrize("facts", [f for f, s in STATES.items() if s is Step.COMMIT])
def test_a_commit_follows_a_whole_copy_under_the_claim_or_the_lease(facts: ChunkFacts) -> None:
    assert facts.copied and facts.media is Media.ABSENT
    assert facts.claim is Claim.MINE or facts.lease is Lease.HELD


@pytest.mark.parametrize("facts", [f for f, s in STATES.items() if s is Step.LEAVE_TO_HOLDER])
def test_a_chunk_is_left_only_to_a_live_holder_or_a_fresh_claimer(facts: ChunkFacts) -> None:
    assert facts.lease is Lease.ELSEWHERE or (facts.claim is Claim.FRESH and facts.media is Media.ABSENT)
    assert not facts.copied


@pytest.mark.parametrize("facts", [f for f, s in STATES.items() if s is Step.RECORD_LOST])
def test_lost_only_when_acs_has_nothing_and_the_archive_holds_no_verified_copy(facts: ChunkFacts) -> None:
    assert facts.source is Source.GONE and facts.copy is Copy.NONE and facts.media is not Media.VERIFIED


@pytest.mark.parametrize("facts", [f for f, s in STATES.items() if s is Step.RECORD])
def test_the_state_says_archived_only_when_verified_and_after_the_source_is_dealt_with(facts: ChunkFacts) -> None:
    assert facts.media is Media.VERIFIED and facts.source is not Source.PRESENT


def test_every_step_moves_the_facts_and_every_path_ends() -> None:
    for facts, step in STATES.items():
        if step is not Step.DONE:
            assert all(after != facts for after in observations(step, facts)), step

    # No cycles: a depth-first walk never meets a state on its own path.
    def longest(facts: ChunkFacts, path: frozenset[ChunkFacts]) -> int:
        assert facts not in path, f"cycle through {facts}"
        step = STATES[facts]
        if step is Step.DONE:
            return 0
        return 1 + max(longest(after, path | {facts}) for after in observations(step, facts))

    assert max(longest(start, frozenset()) for start in STARTS) <= 12


# What each step of a first copy observes, once the chunk's metadata is known.
AFTER_THE_COPY: dict[Step, dict[str, object]] = {
    Step.COPY: {"copied": True},
    Step.COMMIT: {"media": Media.COMMITTED},
    Step.VERIFY: {"media": Media.VERIFIED},
    Step.INDEX: {"indexed": True},
    Step.DELETE_SOURCE: {"source": Source.DELETED},
    Step.RECORD: {"recorded": True},
}


def _drive(script: dict[Step, dict[str, object]]) -> tuple[ChunkFacts, list[Step]]:
    """Run the lifecycle from nothing known, each step observing what ``script`` says; its steps, in order."""
    facts = STARTS[0]
    steps: list[Step] = []
    while (step := next_step(facts)) is not Step.DONE:
        steps.append(step)
        facts = facts.replace(**script[step])
    return facts, steps


def test_the_fresh_happy_path() -> None:
    """The first attempt at a chunk claims it: no look-ups, no lease (one block), nothing it already knows."""
    facts, steps = _drive(
        {
            Step.FETCH_METADATA: {"metadata": Metadata.KNOWN, "claim": Claim.MINE, "media": Media.ABSENT},
            **AFTER_THE_COPY,
        }
    )
    assert steps == [
        Step.FETCH_METADATA,
        Step.COPY,
        Step.COMMIT,
        Step.VERIFY,
        Step.INDEX,
        Step.DELETE_SOURCE,
        Step.RECORD,
    ]
    assert outcome(facts, archived_here=True) is Outcome.ARCHIVED


def test_a_duplicate_finding_a_stale_claim_and_no_copy_copies_under_the_lease() -> None:
    facts, steps = _drive(
        {
            Step.FETCH_METADATA: {"metadata": Metadata.KNOWN, "claim": Claim.STALE},
            Step.LOOK_UP_MEDIA: {"media": Media.ABSENT},
            Step.LEASE: {"lease": Lease.HELD, "media": Media.UNKNOWN},
            **AFTER_THE_COPY,
        }
    )
    assert steps == [
        Step.FETCH_METADATA,
        Step.LOOK_UP_MEDIA,
        Step.LEASE,
        Step.LOOK_UP_MEDIA,
        Step.COPY,
        Step.COMMIT,
        Step.VERIFY,
        Step.INDEX,
        Step.DELETE_SOURCE,
        Step.RECORD,
    ]
    assert outcome(facts, archived_here=True) is Outcome.ARCHIVED


def test_an_archived_chunk_is_indexed_its_source_deleted_and_recorded_without_a_lease() -> None:
    facts = ChunkFacts(metadata=Metadata.KNOWN, media=Media.VERIFIED)
    assert next_step(facts) is Step.INDEX
    assert next_step(facts.replace(indexed=True)) is Step.DELETE_SOURCE
    assert next_step(facts.replace(indexed=True, source=Source.DELETED)) is Step.RECORD
    done = facts.replace(indexed=True, source=Source.DELETED, recorded=True)
    assert next_step(done) is Step.DONE and outcome(done, archived_here=False) is Outcome.ALREADY_ARCHIVED


def test_a_source_acs_never_sized_is_kept_and_recorded_as_kept() -> None:
    facts = ChunkFacts(metadata=Metadata.KNOWN, media=Media.VERIFIED, indexed=True, source=Source.UNPROVABLE)
    assert next_step(facts) is Step.RECORD


def test_outcomes() -> None:
    assert outcome(ChunkFacts(lost_recorded=True), False) is Outcome.LOST
    assert outcome(ChunkFacts(lease=Lease.ELSEWHERE, left_to_holder=True), False) is Outcome.IN_PROGRESS_ELSEWHERE
    assert outcome(ChunkFacts(claim=Claim.FRESH, left_to_holder=True), False) is Outcome.IN_PROGRESS_ELSEWHERE
    assert outcome(ChunkFacts(source=Source.GONE, copy=Copy.FOUND), False) is Outcome.ALREADY_ARCHIVED


def test_a_duplicate_finding_a_fresh_claim_and_no_copy_leaves_it_to_the_claimer() -> None:
    facts = ChunkFacts(metadata=Metadata.KNOWN, claim=Claim.FRESH)
    assert next_step(facts) is Step.LOOK_UP_MEDIA
    facts = facts.replace(media=Media.ABSENT)
    assert next_step(facts) is Step.LEASE  # a big chunk's claimer holds it: wait for it
    facts = facts.replace(lease=Lease.HELD, media=Media.UNKNOWN)
    assert next_step(facts) is Step.LOOK_UP_MEDIA
    assert next_step(facts.replace(media=Media.COMMITTED)) is Step.VERIFY  # a commit to prove: no need to wait
    facts = facts.replace(media=Media.ABSENT)
    assert next_step(facts) is Step.LEAVE_TO_HOLDER  # the claimer may be copying a small chunk, unleased
    assert next_step(facts.replace(left_to_holder=True)) is Step.DONE
