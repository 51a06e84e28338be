"""HMAC-SHA256 request signing, byte for byte as the official ACS SDK signs.

The signature covers the ACS *endpoint* host (sent as ``x-ms-host``), not the
recording storage host the request actually goes to; signing the wrong host is
the classic cause of 401s on recording downloads.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import urlsplit

EMPTY_BODY_SHA256 = base64.b64encode(hashlib.sha256(b"").digest()).decode()


def rfc1123(now: datetime) -> str:
    """``Mon, 23 Nov 2026 13:44:17 GMT``."""
    return format_datetime(now.astimezone(UTC), usegmt=True)


def hmac_headers(method: str, url: str, endpoint_host: str, access_key: str, now: datetime) -> dict[str, str]:
    """The headers that authenticate ``method url`` (empty body) to ACS."""
    parts = urlsplit(url)
    path_and_query = parts.path + (f"?{parts.query}" if parts.query else "")
    date = rfc1123(now)
    string_to_sign = f"{method.upper()}\n{path_and_query}\n{date};{endpoint_host};{EMPTY_BODY_SHA256}"
    digest = hmac.new(base64.b64decode(access_key), string_to_sign.encode(), hashlib.sha256).digest()
    signature = base64.b64encode(digest).decode()
    return {
        "x-ms-date": date,
        "x-ms-content-sha256": EMPTY_BODY_SHA256,
        "x-ms-host": endpoint_host,
        "x-ms-return-client-request-id": "true",
        "Authorization": f"HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={signature}",
    }
