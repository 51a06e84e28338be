"""Our HMAC headers are the official SDK's, byte for byte."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from azure.communication.callautomation._shared import policy as sdk_policy
from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.rest import HttpRequest

from recording_pipeline.core.signing import hmac_headers

KEY = base64.b64encode(b"an access key that is only for this test").decode()
ENDPOINT_HOST = "contoso-acs.communication.azure.com"
NOW = datetime(2026, 11, 23, 9, 5, 7, tzinfo=UTC)


def _sdk_headers(method: str, url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setattr(sdk_policy, "get_current_utc_time", lambda: NOW.strftime("%a, %d %b %Y %H:%M:%S ") + "GMT")
    signer = sdk_policy.HMACCredentialsPolicy(f"https://{ENDPOINT_HOST}", KEY)
    request = PipelineRequest(HttpRequest(method, url, headers={"x-ms-host": ENDPOINT_HOST}), PipelineContext(None))
    signer.on_request(request)
    return dict(request.http_request.headers)


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "https://us-storage.asm.skype.com/v1/objects/0-eus-d12-801b3f3fc462fe8a01e6810cbff729b8/content/video"),
        ("GET", "https://storage.asm.skype.com/v1/objects/0-eus-d12-801b/content/acsmetadata"),
        ("DELETE", "https://us-storage.asm.skype.com/v1/objects/0-eus-d12-801b3f3fc462fe8a01e6810cbff729b8"),
        ("GET", "https://storage.asm.skype.com/v1/objects/doc/content/audio?api-version=2023-03-06&x=1"),
        ("GET", f"https://{ENDPOINT_HOST}/recording/download/legacy-doc/metadata"),
    ],
)
def test_headers_match_the_official_sdk(method: str, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ours = hmac_headers(method, url, ENDPOINT_HOST, KEY, NOW)
    theirs = _sdk_headers(method, url, monkeypatch)
    for name in ("x-ms-date", "x-ms-content-sha256", "Authorization", "x-ms-host", "x-ms-return-client-request-id"):
        assert ours[name] == theirs[name], name


def test_signature_covers_the_endpoint_host_not_the_storage_host(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "https://us-storage.asm.skype.com/v1/objects/doc"
    right = hmac_headers("DELETE", url, ENDPOINT_HOST, KEY, NOW)["Authorization"]
    wrong = hmac_headers("DELETE", url, "us-storage.asm.skype.com", KEY, NOW)["Authorization"]
    assert right != wrong
    assert right == _sdk_headers("DELETE", url, monkeypatch)["Authorization"]
