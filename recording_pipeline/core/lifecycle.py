"""The life of one chunk in one attempt, as data: what is known, and the next step.

The worker performs a step and reports what it observed; ``next_step`` decides
what comes next from the facts alone. Every attempt starts knowing nothing, so
any number of attempts, duplicates and crashes converge: each step first looks
at what the archive already holds. The rules that keep recordings safe are
rules of this function, and its tests walk every reachable state:

- the source is deleted only after the archived copy is verified, that is, after
  its chain-of-custody record was written (once) in the archive;
- media is copied only into an empty place, by one worker at a time: under the
  claim (this attempt created the chunk's metadata document, so nothing else of
  the chunk can exist yet; a copy still running halfway through the claim's
  window takes the lease too) or under the lease, after looking again;
- a worker that finds another's claim fresh and no copy yet leaves the chunk to
  it (and checks again later), as it does for another's live lease;
- a chunk is recorded lost only when ACS no longer has it and no verified copy
  exists anywhere in the archive;
- every step moves the facts forward, so an attempt always ends.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum


class Step(StrEnum):
    FETCH_METADATA = "fetch-metadata"  # the metadata document (archived, else ACS's, archived): who claimed the chunk
    LOOK_UP_MEDIA = "look-up-media"  # is the media blob in the archive, and verified?
    LEASE = "lease"  # hold the chunk against duplicates while it is copied
    LEAVE_TO_HOLDER = "leave-to-holder"  # a live worker holds or claimed it: check again later, stop here
    COPY = "copy"  # stream the media from ACS into staged blocks (resuming); a long one takes the lease meanwhile
    COMMIT = "commit"  # the staged blocks become the blob, only if it is absent
    VERIFY = "verify"  # block list, size and sha256 prove the copy whole; the custody record is written once
    INDEX = "index"  # the participant index names the recording
    DELETE_SOURCE = "delete-source"  # ACS's copy goes, now that ours is proved
    RECORD = "record"  # the recording's state says archived; the DELETE's record is written once, beside it
    FIND_COPY = "find-copy"  # ACS answered 404: did another attempt archive it already?
    RECORD_LOST = "record-lost"  # gone from ACS and never archived
    DONE = "done"


class Metadata(StrEnum):
    UNKNOWN = "unknown"
    KNOWN = "known"


class Media(StrEnum):
    UNKNOWN = "unknown"  # not looked at yet (or to be looked at again, under the lease)
    ABSENT = "absent"
    COMMITTED = "committed"  # the blob exists; not yet proved whole
    VERIFIED = "verified"


class Lease(StrEnum):
    NOT_TRIED = "not-tried"
    HELD = "held"
    ELSEWHERE = "elsewhere"  # a live worker kept it throughout the wait


class Claim(StrEnum):
    """Who created the chunk's metadata document: every copy starts there, so its creator came first."""

    UNKNOWN = "unknown"
    MINE = "mine"  # this attempt created it: no block, blob or record of the chunk can exist yet
    FRESH = "fresh"  # another attempt, moments ago: it may be copying a small chunk without a lease
    STALE = "stale"  # another attempt, long enough ago that it has finished, taken the lease, or died


class Source(StrEnum):
    PRESENT = "present"  # in ACS, to be deleted once archived
    UNPROVABLE = "unprovable"  # in ACS, but ACS never stated its size: it stays
    NOTHING_TO_DELETE = "nothing-to-delete"  # the oldest events carry no delete location
    GONE = "gone"  # ACS answered 404 before we had a copy
    DELETED = "deleted"


class Copy(StrEnum):
    UNKNOWN = "unknown"
    FOUND = "found"
    NONE = "none"


@dataclass(frozen=True)
class ChunkFacts:
    metadata: Metadata = Metadata.UNKNOWN
    claim: Claim = Claim.UNKNOWN
    media: Media = Media.UNKNOWN
    lease: Lease = Lease.NOT_TRIED
    copied: bool = False  # this attempt staged every block
    indexed: bool = False  # the participant index names the recording
    recorded: bool = False  # the recording's state says archived (and what became of the source)
    source: Source = Source.PRESENT
    copy: Copy = Copy.UNKNOWN  # after a 404: a verified copy elsewhere in the archive?
    lost_recorded: bool = False
    left_to_holder: bool = False  # left to the live holder of the lease or claim, to be checked again later

    def replace(self, **changes: object) -> ChunkFacts:
        """These facts with ``changes``: what a step observed (the facts themselves never change)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def next_step(facts: ChunkFacts) -> Step:
    """The one thing to do next. Pure: the same facts always give the same step."""
    if facts.source is Source.GONE:
        if facts.copy is Copy.UNKNOWN:
            return Step.FIND_COPY
        if facts.copy is Copy.FOUND or facts.lost_recorded:
            return Step.DONE
        return Step.RECORD_LOST
    if facts.metadata is Metadata.UNKNOWN:
        return Step.FETCH_METADATA
    if facts.media is Media.UNKNOWN:
        return Step.LOOK_UP_MEDIA
    if facts.media is Media.VERIFIED:
        return _after_archived(facts)
    if facts.left_to_holder:
        return Step.DONE
    if facts.lease is Lease.ELSEWHERE:
        return Step.LEAVE_TO_HOLDER
    if facts.lease is Lease.NOT_TRIED and facts.claim is not Claim.MINE:
        return Step.LEASE
    if facts.media is Media.ABSENT:
        if facts.claim is Claim.FRESH:
            return Step.LEAVE_TO_HOLDER  # its claimer may be copying it, unleased: a small chunk
        return Step.COMMIT if facts.copied else Step.COPY
    return Step.VERIFY  # COMMITTED, under the lease or the claim


def _after_archived(facts: ChunkFacts) -> Step:
    if not facts.indexed:
        return Step.INDEX
    if facts.source is Source.PRESENT:
        return Step.DELETE_SOURCE
    if not facts.recorded:
        return Step.RECORD
    return Step.DONE


class Outcome(StrEnum):
    ARCHIVED = "archived"
    ALREADY_ARCHIVED = "already-archived"
    IN_PROGRESS_ELSEWHERE = "in-progress-elsewhere"
    LOST = "lost"


def outcome(facts: ChunkFacts, archived_here: bool) -> Outcome:
    """How the attempt ended, from its final facts. ``archived_here``: this attempt committed or verified."""
    if facts.lost_recorded:
        return Outcome.LOST
    if facts.left_to_holder:
        return Outcome.IN_PROGRESS_ELSEWHERE
    return Outcome.ARCHIVED if archived_here else Outcome.ALREADY_ARCHIVED
