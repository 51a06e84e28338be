"""Which recording URLs may receive our ACS credentials.

A forged event could name any URL; we sign requests with a key that can read
and delete every recording of the resource. So a URL is checked here, before
any connection is opened or any signature computed, and again right before
each request.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from recording_pipeline.core.errors import UnsafeUrlError

_DEFAULT_PORTS = {"https": 443, "http": 80}
_DNS_NAME = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)*")


@dataclass(frozen=True)
class UrlPolicy:
    """``allowed_hosts``: ``.suffix`` entries match subdomains, bare entries match exactly."""

    allowed_hosts: tuple[str, ...]
    allow_http: bool = False
    acs_endpoint_host: str | None = None

    def check(self, url: str, what: str = "recording URL") -> str:
        """Return ``url`` unchanged if credentials may be sent to it; raise UnsafeUrlError otherwise."""
        if not isinstance(url, str) or not url:
            raise UnsafeUrlError(f"{what} is empty")
        if len(url) > 2048:
            raise UnsafeUrlError(f"{what} is longer than 2048 characters")
        if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
            raise UnsafeUrlError(f"{what} contains whitespace or control characters")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise UnsafeUrlError(f"{what} is not a valid URL") from None
        scheme = parts.scheme.lower()
        if scheme != "https" and not (scheme == "http" and self.allow_http):
            raise UnsafeUrlError(f"{what} must use https")
        if "@" in parts.netloc:
            raise UnsafeUrlError(f"{what} must not carry user information")
        host = (parts.hostname or "").lower().rstrip(".")
        if not host:
            raise UnsafeUrlError(f"{what} has no host")
        if not _DNS_NAME.fullmatch(host) and not _is_ip_literal(host):
            raise UnsafeUrlError(f"{what} host has characters a DNS name cannot have")
        if parts.fragment:
            raise UnsafeUrlError(f"{what} must not have a fragment")
        exact = self._listed_exactly(host)
        if not exact and not self._matches_suffix(host):
            raise UnsafeUrlError(f"{what} host '{host}' is not an allowed recording host")
        if not exact and _is_ip_literal(host):
            raise UnsafeUrlError(f"{what}: IP addresses are allowed only when listed exactly")
        if port is not None and port != _DEFAULT_PORTS[scheme] and not exact:
            raise UnsafeUrlError(f"{what}: a non-default port is allowed only on a host listed exactly")
        return url

    def _listed_exactly(self, host: str) -> bool:
        if self.acs_endpoint_host and host == _hostname_of(self.acs_endpoint_host):
            return True
        return any(not entry.startswith(".") and host == entry for entry in self.allowed_hosts)

    def _matches_suffix(self, host: str) -> bool:
        return any(entry.startswith(".") and host.endswith(entry) for entry in self.allowed_hosts)


def _hostname_of(netloc: str) -> str:
    return (urlsplit(f"//{netloc}").hostname or "").lower()


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def redact_url(url: str) -> str:
    """The URL without its query string (SAS tokens live there) for logs and errors."""
    bare = source_url(url)
    return bare + ("?<redacted>" if bare != "<invalid url>" and urlsplit(url).query else "")


def source_url(url: str) -> str:
    """Scheme, host, port and path only: no user info, query or fragment (where credentials can live)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not one
    except ValueError:
        return "<invalid url>"
    host = parts.netloc.rpartition("@")[2].lower()
    return f"{parts.scheme}://{host}{parts.path}"
