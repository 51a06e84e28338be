"""AcsRecordingClient: signed GET and DELETE of recording files over aiohttp.

Every URL passes the UrlPolicy before a socket is opened or a signature is
made. Redirects are followed by hand: only to allowed hosts, and without
credentials. Error bodies are never parsed (ACS sometimes answers with HTML).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import urljoin

import aiohttp

from recording_pipeline.core.errors import (
    AcsAuthError,
    AcsError,
    AcsPermanentError,
    AcsTransientError,
    ConfigurationError,
    RecordingGoneError,
)
from recording_pipeline.core.settings import AcsCredentials
from recording_pipeline.core.signing import hmac_headers
from recording_pipeline.core.urls import UrlPolicy, redact_url
from recording_pipeline.edges.client_limits import ACS_CONNECT_SECONDS
from recording_pipeline.edges.retry import RetryPolicy

log = logging.getLogger(__name__)

ENTRA_SCOPE = "https://communication.azure.com//.default"
MAX_METADATA_BYTES = 4 * 1024 * 1024
MAX_REDIRECTS = 3
DECLARED_HEADERS = ("Content-Type", "ETag", "Last-Modified")  # what ACS says of the file, kept as evidence
_NOT_RETRYABLE_5XX = {501, 505}  # "not implemented", "HTTP version": asking again changes nothing
_REDIRECTS = {301, 302, 303, 307, 308}
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes \*/(\d+)$")


class TokenProvider(Protocol):
    async def bearer_token(self) -> str: ...


class EntraTokenProvider:
    """Bearer tokens for ACS from an azure-identity async credential, cached until near expiry."""

    def __init__(self, credential: object) -> None:
        self._credential = credential
        self._token: str | None = None
        self._expires_on = 0.0
        self._lock = asyncio.Lock()

    async def bearer_token(self) -> str:
        async with self._lock:
            if self._token is None or self._expires_on - time.time() < 300:
                token = await self._credential.get_token(ENTRA_SCOPE)  # type: ignore[attr-defined]
                self._token, self._expires_on = token.token, float(token.expires_on)
            return self._token


@dataclass
class MediaStream:
    """An open download. ``start`` is where the body begins; ``total`` the whole file's size if known; ``headers``
    what ACS declared about the file."""

    response: aiohttp.ClientResponse
    start: int
    total: int | None
    read_size: int
    headers: dict[str, str]
    at_end: bool = False  # asked for bytes from the file's very end: nothing follows (ACS answered 416)

    async def pieces(self) -> AsyncIterator[bytes]:
        if self.at_end:
            return
        try:
            async for piece in self.response.content.iter_chunked(self.read_size):
                yield piece
        except (TimeoutError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
            raise AcsTransientError(f"media body broke off: {type(exc).__name__}") from None


class AcsRecordingClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        credentials: AcsCredentials,
        url_policy: UrlPolicy,
        token_provider: TokenProvider | None = None,
        retry: RetryPolicy | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        read_timeout: float = 60.0,
        read_size: int = 1024 * 1024,
    ) -> None:
        if credentials.access_key is None and token_provider is None:
            raise ConfigurationError("Entra ID mode needs a token provider")
        self._session = session
        self._credentials = credentials
        self._policy = url_policy
        self._tokens = token_provider
        self.retry = retry or RetryPolicy()
        self._clock = clock
        # No total: a 2 GB chunk downloads for ~19 min at 2 MB/s (aiohttp's default total is 5 min). A connect
        # that takes seconds is a dead route (aiohttp's default: 30 s); edges.client_limits says why.
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=ACS_CONNECT_SECONDS, sock_connect=ACS_CONNECT_SECONDS, sock_read=read_timeout
        )
        self._read_size = read_size

    async def fetch_metadata(self, url: str) -> bytes:
        """The chunk's metadata JSON document, as bytes (bounded), with retries."""

        async def once() -> bytes:
            async with self._request("GET", url) as response:
                declared = response.content_length
                if declared is not None and declared > MAX_METADATA_BYTES:
                    raise AcsPermanentError(f"metadata of {declared} bytes is larger than expected", response.status)
                body = bytearray()
                try:
                    # content.read(n) returns only what is buffered: read to the end, bounded.
                    async for piece in response.content.iter_any():
                        body += piece
                        if len(body) > MAX_METADATA_BYTES:
                            raise AcsPermanentError("metadata is larger than expected", response.status)
                except (TimeoutError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
                    raise AcsTransientError(f"metadata body broke off: {type(exc).__name__}") from None
                if declared is not None and len(body) != declared:
                    raise AcsTransientError("metadata body shorter than its Content-Length", response.status)
                return bytes(body)

        return await self.retry.call(f"GET metadata {redact_url(url)}", once)

    @asynccontextmanager
    async def open_media(self, url: str, offset: int = 0) -> AsyncIterator[MediaStream]:
        """Open the media at ``offset`` (one attempt; the caller resumes and retries)."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        async with self._request("GET", url, headers, passthrough={416} if offset else None) as response:
            if response.status == 416:
                # RFC 9110 15.5.17: a range that starts at the end is unsatisfiable, and Content-Range names the
                # size. An offset at exactly that size is an attempt that staged every block but did not commit.
                match = _UNSATISFIED_RANGE.match(response.headers.get("Content-Range", ""))
                if not match or int(match[1]) != offset:
                    raise AcsPermanentError(f"GET {redact_url(url)} -> 416 for bytes from {offset}", 416)
                # Its headers are the error's, not the file's: only the size is declared.
                yield MediaStream(response, offset, offset, self._read_size, {}, at_end=True)
                return
            start, total = 0, response.content_length
            if response.status == 206:
                match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
                if not match:
                    raise AcsTransientError("206 without a usable Content-Range", 206)
                start = int(match[1])
                total = None if match[3] == "*" else int(match[3])
            declared = {k: response.headers[k] for k in DECLARED_HEADERS if k in response.headers}
            yield MediaStream(response, start, total, self._read_size, declared)

    async def delete(self, url: str) -> bool:
        """DELETE the chunk from ACS. True if deleted now, False if it was already gone."""

        async def once() -> bool:
            try:
                async with self._request("DELETE", url):
                    return True
            except RecordingGoneError:
                return False

        return await self.retry.call(f"DELETE {redact_url(url)}", once)

    @asynccontextmanager
    async def _request(
        self, method: str, url: str, extra: dict[str, str] | None = None, passthrough: set[int] | None = None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """``passthrough``: error statuses the caller reads itself instead of an AcsError."""
        target = self._policy.check(url)
        signed = True
        for _hop in range(MAX_REDIRECTS + 1):
            headers = dict(extra or {})
            if signed:
                headers.update(await self._auth_headers(method, target))
            try:
                async with self._session.request(
                    method, target, headers=headers, allow_redirects=False, timeout=self._timeout
                ) as response:
                    if response.status in _REDIRECTS and "Location" in response.headers:
                        target = self._policy.check(urljoin(target, response.headers["Location"]), "redirect target")
                        signed = False  # never hand credentials to a redirect target
                        continue
                    if response.status >= 300 and response.status not in (passthrough or ()):
                        raise await _error_for(method, target, response)
                    yield response
                    return
            except AcsError:
                raise
            except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
                raise AcsTransientError(f"{method} {redact_url(target)}: {type(exc).__name__}") from None
        raise AcsPermanentError(f"{method} {redact_url(url)}: more than {MAX_REDIRECTS} redirects")

    async def _auth_headers(self, method: str, url: str) -> dict[str, str]:
        if self._credentials.access_key is not None:
            return hmac_headers(
                method, url, self._credentials.endpoint_host, self._credentials.access_key, self._clock()
            )
        assert self._tokens is not None
        return {"Authorization": f"Bearer {await self._tokens.bearer_token()}"}


async def _error_for(method: str, url: str, response: aiohttp.ClientResponse) -> AcsError:
    status = response.status
    snippet = ""
    try:
        raw = await response.content.read(512)
        snippet = " ".join(raw.decode("utf-8", "replace").split())[:160]
    except Exception:  # an error body is a courtesy; its absence changes nothing
        snippet = "(no readable body)"
    where = f"{method} {redact_url(url)} -> {status}"
    if status in (408, 429) or (status >= 500 and status not in _NOT_RETRYABLE_5XX):
        return AcsTransientError(f"{where} {snippet}".strip(), status, _retry_after(response))
    if status in (401, 403):
        return AcsAuthError(
            f"{where}: ACS refused our credentials (check the access key or the identity's role, "
            f"and that ACS_ENDPOINT names this resource)",
            status,
        )
    if status == 404:
        return RecordingGoneError(f"{where}: ACS no longer has this file", status)
    return AcsPermanentError(f"{where} {snippet}".strip(), status)


def _retry_after(response: aiohttp.ClientResponse) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
