"""Which URLs may receive ACS credentials (UrlPolicy), checked on every URL field of an event."""

from __future__ import annotations

from typing import Any

import pytest

from recording_pipeline.core.errors import InvalidEventError, UnsafeUrlError
from recording_pipeline.core.events import parse_recording_event, read_envelope
from recording_pipeline.core.jobs import RecordingChunk, plan_jobs
from recording_pipeline.core.settings import DEFAULT_ALLOWED_HOSTS
from recording_pipeline.core.urls import UrlPolicy, redact_url, source_url

ACS_HOST = "acs-prod.communication.azure.com"
ACS_ENDPOINT = f"https://{ACS_HOST}"
POLICY = UrlPolicy(DEFAULT_ALLOWED_HOSTS, allow_http=False, acs_endpoint_host=ACS_HOST)
DOC = "0-eus-d12-801b3f3fc462fe8a01e6810cbff729b8"
GOOD = {
    "contentLocation": f"https://storage.asm.skype.com/v1/objects/{DOC}/content/video",
    "metadataLocation": f"https://storage.asm.skype.com/v1/objects/{DOC}/content/acsmetadata",
    "deleteLocation": f"https://us-storage.asm.skype.com/v1/objects/{DOC}",
}
URL_FIELDS = tuple(GOOD)


def event_with_chunk(chunk: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "5b0c1e7a-77c4-4d84-a0a5-0f9d2e1c3b4a",
        "topic": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Communication/communicationServices/acs-prod",
        "subject": "/recording/call/3f1c8f6e-52f4-4a55-9f0e-8a7c2d1b4e90/recordingId/eyJyZWMiOiIxIn0",
        "eventType": "Microsoft.Communication.RecordingFileStatusUpdated",
        "dataVersion": "1.0",
        "metadataVersion": "1",
        "eventTime": "2024-05-14T10:33:02Z",
        "data": {
            "recordingStorageInfo": {"recordingChunks": [{"documentId": DOC, "index": 0, **chunk}]},
            "recordingStartTime": "2024-05-14T09:12:31Z",
            "recordingDurationMs": 60000,
            "sessionEndReason": "CallEnded",
        },
    }


def plan(chunk: dict[str, Any], policy: UrlPolicy = POLICY, endpoint: str = ACS_ENDPOINT) -> list[RecordingChunk]:
    event = parse_recording_event(read_envelope(event_with_chunk(chunk), "eventgrid"))
    return plan_jobs(event, endpoint, 24, policy)


def test_unsafe_url_error_is_an_invalid_event() -> None:
    assert issubclass(UnsafeUrlError, InvalidEventError)


def test_documented_urls_are_accepted_and_copied_to_the_job() -> None:
    (job,) = plan(GOOD)
    assert (job.content_url, job.metadata_url, job.delete_url) == (
        GOOD["contentLocation"],
        GOOD["metadataLocation"],
        GOOD["deleteLocation"],
    )


def test_delete_location_is_optional() -> None:
    (job,) = plan({k: v for k, v in GOOD.items() if k != "deleteLocation"})
    assert job.delete_url is None
    assert job.content_url == GOOD["contentLocation"]


BAD_URLS = [
    ("http://storage.asm.skype.com/v1/objects/x", "must use https"),
    ("ftp://storage.asm.skype.com/v1/objects/x", "must use https"),
    ("//storage.asm.skype.com/v1/objects/x", "must use https"),
    ("https://evil.example.com/v1/objects/x", "not an allowed recording host"),
    ("https://user@storage.asm.skype.com/v1/objects/x", "user information"),
    ("https://user:secret@storage.asm.skype.com/v1/objects/x", "user information"),
    ("https://storage.asm.skype.com@evil.example.com/v1/objects/x", "user information"),
    ("https://evilasm.skype.com/v1/objects/x", "not an allowed recording host"),
    ("https://asm.skype.com/v1/objects/x", "not an allowed recording host"),
    ("https://storage.asm.skype.com.evil.com/v1/objects/x", "not an allowed recording host"),
    ("https://storage.asm.skype.com.:8443/v1/objects/x", "non-default port"),
    ("https://storage.asm.skype.com:8443/v1/objects/x", "non-default port"),
    ("https://storage.asm.skype.com:80/v1/objects/x", "non-default port"),
    ("https://storage.asm.skype.com/v1/objects/x#frag", "fragment"),
    ("https://storage.asm.skype.com/v1/objects/a b", "whitespace"),
    ("https://storage.asm.skype.com/v1/objects/a\tb", "whitespace"),
    ("https://storage.asm.skype.com/v1/objects/a\x00b", "control characters"),
    ("https://storage.asm.skype.com:notaport/v1/objects/x", "not a valid URL"),
    ("https://[::1/v1/objects/x", "not a valid URL"),
    ("https:///v1/objects/x", "no host"),
    ("https://acs-prod.communication.azure.com.evil.com/recording/download/x", "not an allowed recording host"),
    ("https://evil.acs-prod.communication.azure.com/recording/download/x", "not an allowed recording host"),
    ("https://storage.asm.skype.com/" + "a" * 2100, "longer than 2048"),
]


@pytest.mark.parametrize("field", URL_FIELDS)
@pytest.mark.parametrize(("url", "message"), BAD_URLS)
def test_every_url_field_rejects_unsafe_urls(field: str, url: str, message: str) -> None:
    with pytest.raises(UnsafeUrlError, match=message) as info:
        plan({**GOOD, field: url})
    assert field in str(info.value)


@pytest.mark.parametrize(("url", "message"), BAD_URLS)
def test_policy_check_rejects_unsafe_urls(url: str, message: str) -> None:
    with pytest.raises(UnsafeUrlError, match=message):
        POLICY.check(url)


@pytest.mark.parametrize("url", ["", " https://storage.asm.skype.com/x", "https://storage.asm.skype.com/x\n"])
def test_empty_or_padded_urls_are_rejected(url: str) -> None:
    with pytest.raises(UnsafeUrlError):
        POLICY.check(url)


def test_non_string_url_is_rejected() -> None:
    with pytest.raises(UnsafeUrlError, match="is empty"):
        POLICY.check(None)  # type: ignore[arg-type]


def test_backslash_in_the_authority_is_rejected() -> None:
    # WHATWG URL parsers (browsers, many HTTP clients) read '\' as '/', so this URL's host is evil.example.com;
    # urllib.parse reads the host as 'evil.example.com\.asm.skype.com', which ends with an allowed suffix.
    with pytest.raises(UnsafeUrlError):
        POLICY.check("https://evil.example.com\\.asm.skype.com/v1/objects/x")


def test_ip_literal_matching_a_suffix_entry_is_rejected() -> None:
    policy = UrlPolicy((".0.0.1", ".asm.skype.com"))
    with pytest.raises(UnsafeUrlError, match="IP addresses are allowed only when listed exactly"):
        policy.check("https://127.0.0.1/v1/objects/x")


def test_non_default_port_on_a_suffix_entry_is_rejected_even_with_http_allowed() -> None:
    policy = UrlPolicy(DEFAULT_ALLOWED_HOSTS, allow_http=True)
    with pytest.raises(UnsafeUrlError, match="non-default port"):
        policy.check("http://storage.asm.skype.com:8080/v1/objects/x")
    assert (
        policy.check("http://storage.asm.skype.com:80/v1/objects/x") == "http://storage.asm.skype.com:80/v1/objects/x"
    )


@pytest.mark.parametrize(
    "url",
    [
        GOOD["contentLocation"],
        GOOD["deleteLocation"],
        "https://storage.asm.skype.com:443/v1/objects/x",
        "https://STORAGE.ASM.SKYPE.COM/v1/objects/x",
        "https://storage.asm.skype.com./v1/objects/x",
        "https://emea-storage.asyncgw.teams.microsoft.com/v1/objects/x",
        "https://gov-storage.ams.gov.teams.microsoft.us/v1/objects/x",
        "https://storage.asm.skype.com/v1/objects/x?sv=2024&sig=abc",
    ],
)
def test_default_allowed_hosts_are_accepted(url: str) -> None:
    assert POLICY.check(url) == url


def test_url_is_accepted_in_every_field() -> None:
    url = f"https://emea-storage.asyncgw.teams.microsoft.com/v1/objects/{DOC}"
    (job,) = plan({"contentLocation": url, "metadataLocation": url + "/m", "deleteLocation": url})
    assert (job.content_url, job.metadata_url, job.delete_url) == (url, url + "/m", url)


def test_exactly_listed_bare_host_allows_a_port_and_http_when_enabled() -> None:
    policy = UrlPolicy(("127.0.0.1",), allow_http=True)
    url = f"http://127.0.0.1:8080/v1/objects/{DOC}/content/video"
    assert policy.check(url) == url
    (job,) = plan({"contentLocation": url, "metadataLocation": url + "/m", "deleteLocation": url}, policy=policy)
    assert job.content_url == url


def test_exactly_listed_host_still_needs_allow_http_for_http() -> None:
    policy = UrlPolicy(("127.0.0.1",), allow_http=False)
    with pytest.raises(UnsafeUrlError, match="must use https"):
        policy.check("http://127.0.0.1:8080/v1/objects/x")
    assert policy.check("https://127.0.0.1:8443/v1/objects/x") == "https://127.0.0.1:8443/v1/objects/x"


def test_exact_entry_does_not_match_other_hosts_or_subdomains() -> None:
    policy = UrlPolicy(("127.0.0.1", "recordings.example.com"), allow_http=True)
    for url in ("http://127.0.0.2:8080/x", "https://a.recordings.example.com/x", "https://recordings.example.co/x"):
        with pytest.raises(UnsafeUrlError, match="not an allowed recording host"):
            policy.check(url)


def test_legacy_urls_are_accepted_on_the_acs_endpoint_host() -> None:
    (job,) = plan({})
    assert job.content_url == f"{ACS_ENDPOINT}/recording/download/{DOC}"
    assert POLICY.check(job.content_url) == job.content_url
    assert POLICY.check(job.metadata_url) == job.metadata_url


def test_legacy_urls_are_rejected_when_the_policy_does_not_know_the_acs_endpoint() -> None:
    with pytest.raises(UnsafeUrlError, match=r"contentLocation host 'acs-prod\.communication\.azure\.com'"):
        plan({}, policy=UrlPolicy(DEFAULT_ALLOWED_HOSTS))


def test_acs_endpoint_host_with_a_port_matches_its_hostname() -> None:
    policy = UrlPolicy(("127.0.0.1",), allow_http=True, acs_endpoint_host="localhost:8787")
    (job,) = plan({}, policy=policy, endpoint="http://localhost:8787")
    assert job.content_url == f"http://localhost:8787/recording/download/{DOC}"
    assert job.metadata_url == f"http://localhost:8787/recording/download/{DOC}/metadata"


def test_legacy_urls_on_an_http_endpoint_need_allow_http() -> None:
    policy = UrlPolicy(DEFAULT_ALLOWED_HOSTS, allow_http=False, acs_endpoint_host="localhost:8787")
    with pytest.raises(UnsafeUrlError, match="contentLocation must use https"):
        plan({}, policy=policy, endpoint="http://localhost:8787")


def test_what_names_the_field_in_the_error() -> None:
    with pytest.raises(UnsafeUrlError, match=r"^redirect target must use https$"):
        POLICY.check("http://storage.asm.skype.com/x", "redirect target")


# --- redact_url -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        (
            "https://archive.blob.core.windows.net/recordings/a.mp4?sv=2024-05-04&sig=SECRETSIG",
            "https://archive.blob.core.windows.net/recordings/a.mp4?<redacted>",
        ),
        (GOOD["contentLocation"], GOOD["contentLocation"]),
        ("https://user:pw@storage.asm.skype.com/v1/x", "https://storage.asm.skype.com/v1/x"),
        ("https://storage.asm.skype.com/v1/x?token=abc#frag", "https://storage.asm.skype.com/v1/x?<redacted>"),
        ("https://[::1/x", "<invalid url>"),
        ("http://127.0.0.1:8080/v1/x?sig=1", "http://127.0.0.1:8080/v1/x?<redacted>"),
        ("https://u:p@[::1]:8443/v1/x", "https://[::1]:8443/v1/x"),
        ("https://h.example.com:99999/x", "<invalid url>"),
    ],
)
def test_redact_url(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


@pytest.mark.parametrize(
    ("url", "bare"),
    [
        (
            "https://storage.asm.skype.com/v1/objects/d/content/video?sig=S#f",
            "https://storage.asm.skype.com/v1/objects/d/content/video",
        ),
        ("https://user:pw@Storage.asm.skype.com:443/v1/x", "https://storage.asm.skype.com:443/v1/x"),
        ("https://[::1/x", "<invalid url>"),
    ],
)
def test_source_url_keeps_where_the_file_was_and_nothing_secret(url: str, bare: str) -> None:
    assert source_url(url) == bare


def test_redact_url_never_contains_the_query_values() -> None:
    out = redact_url("https://h.example.com/p?sig=TOPSECRET&skoid=abc")
    assert "TOPSECRET" not in out
    assert "skoid" not in out


@pytest.mark.parametrize("field", ["contentLocation", "metadataLocation", "deleteLocation"])
def test_every_url_must_name_its_own_chunk(field: str) -> None:
    """A deleteLocation (or any URL) naming another documentId would delete a recording we never copied."""
    other = GOOD[field].replace(DOC, "0-eus-d12-0ther0ther0ther0ther0ther0ther0ther0")
    with pytest.raises(InvalidEventError, match=f"{field} does not name chunk {DOC}"):
        plan({**GOOD, field: other})
    with pytest.raises(InvalidEventError, match="does not name chunk"):
        plan({**GOOD, field: GOOD[field].replace(DOC, DOC + "x")})  # a prefix is not the id
