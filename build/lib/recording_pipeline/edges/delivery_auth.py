"""Entra ID-protected Event Grid delivery: check the bearer token Event Grid sends.

With ``WEBHOOK_ENTRA_TENANT_ID`` and ``WEBHOOK_ENTRA_AUDIENCE`` set, a POST is
accepted only with a token signed by one of the tenant's published keys (RS256),
issued by that tenant, for that audience, and within its lifetime. The key set
is fetched once and again only when a token names a key we do not know (at
most every five minutes), so a flood of forged tokens cannot make us hammer
the tenant's endpoint.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
import jwt

from recording_pipeline.core.errors import DeliveryAuthError, DeliveryAuthUnavailable

log = logging.getLogger(__name__)

REFRESH_INTERVAL = 300.0
LEEWAY_SECONDS = 60


class EntraDeliveryValidator:
    def __init__(
        self, session: aiohttp.ClientSession, tenant_id: str, audience: str, jwks_url: str | None = None
    ) -> None:
        self._session = session
        self.audience = audience
        self.issuers = [f"https://login.microsoftonline.com/{tenant_id}/v2.0", f"https://sts.windows.net/{tenant_id}/"]
        self.jwks_url = jwks_url or f"https://login.microsoftonline.com/{tenant_id}/discovery/v2.0/keys"
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def check(self, authorization: str | None) -> dict[str, Any]:
        """The token's claims, or DeliveryAuthError."""
        if not authorization or not authorization.startswith("Bearer "):
            raise DeliveryAuthError("a bearer token is required")
        token = authorization[len("Bearer ") :].strip()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise DeliveryAuthError("malformed bearer token") from None
        if header.get("alg") != "RS256":
            raise DeliveryAuthError("unexpected token algorithm")
        key = await self._key(str(header.get("kid", "")))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=self.audience,
                issuer=self.issuers,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise DeliveryAuthError(f"token rejected: {type(exc).__name__}") from None
        return claims

    async def _key(self, kid: str) -> jwt.PyJWK:
        """The signing key ``kid``. 401 only when the tenant's current key set, fetched now, lacks it."""
        if kid in self._keys:
            return self._keys[kid]
        fetched_now = False
        async with self._lock:
            if kid not in self._keys and time.monotonic() - self._fetched_at > REFRESH_INTERVAL:
                fetched_now = await self._refresh()
        if kid in self._keys:
            return self._keys[kid]
        if fetched_now:
            raise DeliveryAuthError("token signed with an unknown key")
        # The keys could not be fetched, or were fetched moments ago (a key rollover may be under way).
        raise DeliveryAuthUnavailable("the tenant's signing keys cannot be checked right now")

    async def _refresh(self) -> bool:
        """Fetch the key set; False (keeping the keys we had) if that failed."""
        self._fetched_at = time.monotonic()
        try:
            async with self._session.get(self.jwks_url, timeout=aiohttp.ClientTimeout(total=10)) as response:
                response.raise_for_status()
                document = await response.json(content_type=None)
            keys = jwt.PyJWKSet.from_dict(document)
        except Exception as exc:
            log.warning("could not refresh the tenant's signing keys: %s", type(exc).__name__)
            return False
        self._keys = {str(k.key_id): k for k in keys.keys if k.key_id}
        return True
