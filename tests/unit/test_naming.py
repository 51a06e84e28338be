"""Blob names from recording identities: safe ids, recording keys, the documented layout, media formats."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from recording_pipeline.core.errors import InvalidEventError
from recording_pipeline.core.jobs import (
    checked_identity,
)
from recording_pipeline.core.naming import (
    MAX_ID_LENGTH,
    check_id,
    chunk_stem,
    lost_name,
    manifest_name,
    media_format,
    media_name,
    metadata_name,
    recording_key,
)
from tests.support.events import (
    CALL,
    DOC,
    REC,
    SERVER,
    chunk,
    plan,
    raw_event,
    to_event,
)

# --- check_id ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        CALL,
        CALL.upper(),
        REC,
        SERVER,
        DOC,
        "a",
        "0",
        "abc_DEF-123",
        "padded==",
        "8:acs:6c4f5e3a-1b2d-4e8f-9a0b-7c6d5e4f3a2b_00000022-1a2b-3c4d",
        "v1.2.3",
        "x" * MAX_ID_LENGTH,
    ],
)
def test_check_id_accepts_documented_id_shapes(value: str) -> None:
    assert check_id(value, "callId") == value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "is missing"),
        ("", "is missing"),
        ("x" * (MAX_ID_LENGTH + 1), "is longer than 256"),
        ("..", "contains '..'"),
        ("a..b", "contains '..'"),
        ("..abc", "contains '..'"),  # the rule it breaks, though it also starts with a dot
        ("a/b", "has characters outside"),
        ("a\\b", "has characters outside"),
        ("a b", "has characters outside"),
        (" a", "has characters outside \\[A-Za-z0-9_=.:-\\]: ' '$"),
        ("a\x00b", "has characters outside"),
        ("a\x1bb", "has characters outside"),
        ("a\x7f", "has characters outside"),
        ("a\tb", "has characters outside"),
        ("a\nb", "has characters outside"),
        ("abc\n", "has characters outside"),
        ("abc\r", "has characters outside"),
        (".hidden", "must start with a letter or a digit, not '.'"),
        ("-leading", "must start with a letter or a digit, not '-'"),
        ("_leading", "must start with a letter or a digit, not '_'"),
        ("caf\u00e9", "has characters outside \\[A-Za-z0-9_=.:-\\]: '\\\\xe9'$"),
        ("a%2Fb", "has characters outside"),
        ("a+b", "has characters outside"),
        ("a?b", "has characters outside"),
        ("a#b", "has characters outside"),
    ],
)
def test_check_id_rejects_unsafe_ids_naming_the_field(value: str | None, message: str) -> None:
    with pytest.raises(InvalidEventError, match=rf"^recordingId {message}"):
        check_id(value, "recordingId")


UNSAFE_SEGMENTS = ["..", "a..b", "a\\b", "a b", "a\x00b", "a\x01b", "abc\n", "x" * 257, "caf\u00e9"]


@pytest.mark.parametrize("bad", UNSAFE_SEGMENTS)
@pytest.mark.parametrize(
    ("field", "template"),
    [
        ("callId", "/recording/call/{bad}/serverCallId/s1/recordingId/r1"),
        ("serverCallId", "/recording/call/c1/serverCallId/{bad}/recordingId/r1"),
        ("recordingId", "/recording/call/c1/serverCallId/s1/recordingId/{bad}"),
        ("serverCallId", "/recording/call/c1/serverCallId/{bad}"),
    ],
)
def test_plan_jobs_rejects_unsafe_ids_in_the_subject(bad: str, field: str, template: str) -> None:
    raw = raw_event(subject=template.format(bad=bad))
    with pytest.raises(InvalidEventError, match=f"^{field} "):
        plan(raw)


@pytest.mark.parametrize("bad", ["../../other-call", "a/b", "/abs", *(s for s in UNSAFE_SEGMENTS if s != "abc\n")])
def test_plan_jobs_rejects_unsafe_recording_id_from_data(bad: str) -> None:
    # (data fields are whitespace-stripped by the model, so a trailing newline there never reaches check_id)
    raw = raw_event(subject=f"/recording/call/{CALL}/serverCallId/{SERVER}", recordingId=bad)
    with pytest.raises(InvalidEventError, match="recordingId"):
        plan(raw)


@pytest.mark.parametrize("bad", ["../x", "a/b", "a\\b", "a b", "a\x00b", "..", "x" * 257, "caf\u00e9"])
@pytest.mark.parametrize("legacy", [False, True])
def test_plan_jobs_rejects_unsafe_document_ids(bad: str, legacy: bool) -> None:
    raw = raw_event(chunks=[chunk(DOC, 0), chunk(bad, 1, "SessionEnded", legacy=legacy)])
    with pytest.raises(InvalidEventError, match=r"^documentId "):
        plan(raw)


def test_plan_jobs_rejects_empty_document_id() -> None:
    raw = raw_event(chunks=[{"documentId": "", "index": 0}])
    with pytest.raises(InvalidEventError, match="documentId"):
        plan(raw)


def test_plan_jobs_accepts_documented_ids_and_keeps_them_verbatim() -> None:
    (job,) = plan(raw_event())
    assert (job.call_id, job.server_call_id, job.recording_id, job.document_id) == (CALL, SERVER, REC, DOC)
    assert job.stem == f"{CALL}/r-{REC}/00000-{DOC}"


def test_checked_identity_returns_safe_parts_and_key() -> None:
    assert checked_identity(to_event(raw_event())) == (CALL, SERVER, REC, f"r-{REC}")
    server_only = to_event(raw_event(subject=f"/recording/call/{CALL}/serverCallId/{SERVER}"))
    digest = hashlib.sha256(SERVER.encode()).hexdigest()[:32]
    assert checked_identity(server_only) == (CALL, SERVER, None, f"s-{digest}")
    assert checked_identity(to_event(raw_event(subject=f"/recording/call/{CALL}"))) == (CALL, None, None, "call")


# --- recording_key and blob names --------------------------------------------------------------


def test_recording_key_prefers_recording_id_then_server_call_digest_then_call() -> None:
    digest = hashlib.sha256(b"server-1").hexdigest()[:32]
    assert recording_key("rec-1", "server-1") == "r-rec-1"
    assert recording_key(None, "server-1") == f"s-{digest}"
    assert recording_key(None, None) == "call"
    assert recording_key("", "") == "call"


def test_recording_key_kinds_cannot_collide() -> None:
    server_key = recording_key(None, "server-1")
    # A recordingId spelled like the other kinds' keys still lands in its own r- namespace.
    assert recording_key(server_key, None) != server_key
    assert recording_key(server_key[2:], None) != server_key
    assert recording_key("call", None) != recording_key(None, None)
    assert recording_key("s", None) != recording_key(None, "s")


def test_recording_key_digest_is_bounded_for_long_server_call_ids() -> None:
    key = recording_key(None, "S" * 256)
    assert len(key) == 34
    assert recording_key(None, "S" * 256) == key
    assert recording_key(None, "S" * 255) != key


def test_blob_names_follow_the_documented_layout() -> None:
    stem = chunk_stem(CALL, f"r-{REC}", 7, DOC)
    assert stem == f"{CALL}/r-{REC}/00007-{DOC}"
    assert media_name(stem, "mp4") == f"{stem}.mp4"
    assert metadata_name(stem) == f"{stem}.metadata.json"
    assert lost_name(stem) == f"_lost/{stem}.json"
    assert manifest_name(CALL, f"r-{REC}") == f"{CALL}/r-{REC}/manifest.json"


_ID_ALPHABET = "aZ09-_.:="
safe_ids = st.text(alphabet=_ID_ALPHABET, min_size=1, max_size=6).filter(
    lambda s: s[0].isalnum() and ".." not in s
) | st.sampled_from([CALL, REC, DOC, SERVER])
indexes = st.integers(min_value=0, max_value=100_000)


def _names(call_id: str, rec_key: str, index: int, document_id: str) -> set[str]:
    stem = chunk_stem(call_id, rec_key, index, document_id)
    names = {media_name(stem, ext) for ext in ("mp4", "mp3", "wav", "bin")}
    return names | {metadata_name(stem), lost_name(stem), manifest_name(call_id, rec_key)}


@settings(max_examples=200, deadline=None)
@given(
    a=st.tuples(safe_ids, safe_ids, indexes, safe_ids),
    b=st.tuples(safe_ids, safe_ids, indexes, safe_ids),
)
def test_distinct_recording_chunks_never_share_a_stem(
    a: tuple[str, str, int, str], b: tuple[str, str, int, str]
) -> None:
    stems = []
    for call_id, recording_id, index, document_id in (a, b):
        for value, what in ((call_id, "callId"), (recording_id, "recordingId"), (document_id, "documentId")):
            check_id(value, what)
        stems.append(chunk_stem(call_id, recording_key(recording_id, None), index, document_id))
    assert (stems[0] == stems[1]) == (a == b)


@settings(max_examples=200, deadline=None)
@given(
    a=st.tuples(safe_ids, st.none() | safe_ids, st.none() | safe_ids, indexes, safe_ids),
    b=st.tuples(safe_ids, st.none() | safe_ids, st.none() | safe_ids, indexes, safe_ids),
)
def test_distinct_chunks_of_any_identity_kind_never_share_a_blob_name(
    a: tuple[str, str | None, str | None, int, str], b: tuple[str, str | None, str | None, int, str]
) -> None:
    def identity(t: tuple[str, str | None, str | None, int, str]) -> tuple[Any, ...]:
        call_id, server_call_id, recording_id, index, document_id = t
        # A recordingId names the recording; without one the serverCallId does; without both, the call.
        who = ("r", recording_id) if recording_id else ("s", server_call_id) if server_call_id else ("call",)
        return call_id, who, index, document_id

    names_a = _names(a[0], recording_key(a[2], a[1]), a[3], a[4])
    names_b = _names(b[0], recording_key(b[2], b[1]), b[3], b[4])
    same_recording = identity(a)[:2] == identity(b)[:2]
    if identity(a) == identity(b):
        assert names_a == names_b
    elif same_recording:
        assert names_a & names_b == {manifest_name(a[0], recording_key(a[2], a[1]))}
    else:
        assert not names_a & names_b


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet=st.sampled_from("aZ09-_.:=/\\ \n\t\x00\x7f\u00e9\u0130"), min_size=1, max_size=8)
    | st.text(max_size=8)
)
@example("abc\n")
def test_check_id_output_is_always_a_single_safe_path_segment(value: str) -> None:
    try:
        checked = check_id(value, "callId")
    except InvalidEventError:
        return
    assert checked == value
    assert all(c.isascii() and (c.isalnum() or c in "_=.:-") for c in checked)
    assert ".." not in checked
    assert checked[0].isalnum()


# --- media_format ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidates", "expected"),
    [
        (("mp4",), ("mp4", "video/mp4")),
        (("Mp3",), ("mp3", "audio/mpeg")),
        ((" WAV ",), ("wav", "audio/wav")),
        ((None, "wav"), ("wav", "audio/wav")),
        (("flac", "mp3"), ("mp3", "audio/mpeg")),
        (("flac",), ("bin", "application/octet-stream")),
        ((), ("bin", "application/octet-stream")),
        ((None, ""), ("bin", "application/octet-stream")),
    ],
)
def test_media_format(candidates: tuple[str | None, ...], expected: tuple[str, str]) -> None:
    assert media_format(*candidates) == expected
