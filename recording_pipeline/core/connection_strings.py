"""Storage connection strings and account URLs, checked when the settings are read.

azure-storage-blob and azure-storage-queue parse a connection string only when a client is built
(``_shared/base_client.parse_connection_str``), and decode the account key only when the first request is signed;
what they refuse then is a ``ValueError`` or a ``binascii.Error`` with a traceback, naming no setting. The same
rules are checked here first, so a bad value is one ConfigurationError that names the setting and the fix. Nothing
here echoes a connection string: it holds the account key.
"""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import urlsplit

from recording_pipeline.core.errors import ConfigurationError

CONNECTION_STRING_FIX = (
    "copy it again from the storage account's Access keys page "
    "(DefaultEndpointsProtocol=https;AccountName=…;AccountKey=…;EndpointSuffix=core.windows.net), "
    "or use UseDevelopmentStorage=true for a local Azurite"
)
_ACCOUNT_NAME = re.compile(r"[a-z0-9]{3,24}")


def check_connection_string(value: str, setting: str, service: str) -> None:
    """Raise ConfigurationError if the SDK would refuse ``value`` for ``service`` (``blob``, ``queue``), or could
    not sign a request with it. The SDK's rules: ``KEY=VALUE`` pairs separated by ``;`` (keys case-insensitive),
    ``UseDevelopmentStorage=true`` alone suffices, else an endpoint for the service or an ``AccountName``."""
    pieces = value.rstrip(";").split(";")
    if any("=" not in piece for piece in pieces):
        raise ConfigurationError(
            f"{setting} is not a connection string (KEY=VALUE pairs separated by ';'): {CONNECTION_STRING_FIX}"
        )
    parts = {key.upper(): val for key, _, val in (piece.partition("=") for piece in pieces)}
    if parts.get("USEDEVELOPMENTSTORAGE") == "true":
        return
    endpoint = parts.get(f"{service.upper()}ENDPOINT")
    if endpoint is None and f"{service.upper()}SECONDARYENDPOINT" in parts:
        raise ConfigurationError(f"{setting} names only a secondary {service} endpoint: {CONNECTION_STRING_FIX}")
    if endpoint is not None:
        check_account_url(endpoint, setting, f"its {service.capitalize()}Endpoint")
    elif not parts.get("ACCOUNTNAME"):
        raise ConfigurationError(
            f"{setting} has neither AccountName nor {service.capitalize()}Endpoint: {CONNECTION_STRING_FIX}"
        )
    protocol = parts.get("DEFAULTENDPOINTSPROTOCOL")
    if protocol is not None and protocol not in ("https", "http"):
        raise ConfigurationError(f"{setting}: DefaultEndpointsProtocol must be https or http: {CONNECTION_STRING_FIX}")
    key, signature = parts.get("ACCOUNTKEY"), parts.get("SHAREDACCESSSIGNATURE")
    if key is not None and parts.get("ACCOUNTNAME"):
        try:
            base64.b64decode(key, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigurationError(f"{setting}: its AccountKey is not base64: {CONNECTION_STRING_FIX}") from None
    elif not signature:
        raise ConfigurationError(
            f"{setting} carries no AccountName and AccountKey, nor a SharedAccessSignature: {CONNECTION_STRING_FIX}"
        )


def check_account_url(value: str, setting: str, what: str = "") -> str:
    """An account (or service) URL the SDK can use: ``https://HOST[:PORT][/PATH]`` (http for an emulator); the URL
    without a trailing slash."""
    described = f"{setting} ({what})" if what else setting
    try:
        parts = urlsplit(value.strip())
        usable = parts.scheme in ("https", "http") and bool(parts.hostname)
        usable = usable and not parts.username and parts.password is None
        usable = usable and (parts.port or 0) >= 0  # a port that is not a number raises ValueError
    except ValueError:
        usable = False
    if not usable:
        raise ConfigurationError(
            f"{described} must be a URL like https://ACCOUNT.blob.core.windows.net, not {_shown(value)}"
        )
    return value.strip().rstrip("/")


def check_account_name(value: str, setting: str) -> str:
    if not _ACCOUNT_NAME.fullmatch(value.strip()):
        raise ConfigurationError(f"{setting} must be a storage account name (3-24 lowercase letters and digits)")
    return value.strip()


def _shown(value: str) -> str:
    """A URL setting as it may be quoted back: short, and without anything after '?' (a SAS token)."""
    bare = value.split("?", 1)[0]
    return repr(bare if len(bare) <= 80 else bare[:77] + "...")
