"""Environment (Functions app settings) → one frozen, validated Settings object.

Read once per process and passed to the clients, so a bad setting fails at
start-up with a clear message instead of on the first recording.
"""

from __future__ import annotations

import base64
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from recording_pipeline.core.errors import ConfigurationError

DEFAULT_ALLOWED_HOSTS = (".asm.skype.com", ".asyncgw.teams.microsoft.com", ".ams.gov.teams.microsoft.us")
DEFAULT_QUEUE_NAME = "recording-chunks"
DEFAULT_CONTAINER = "recordings"
MIB = 1024 * 1024
POISON_SUFFIX = "-poison"
KEY_VAULT_REFERENCE = "@microsoft.keyvault("
# Every app setting the app reads (besides AzureWebJobsStorage*), documented in README and local.settings.sample.json.
SETTING_NAMES = (
    "ACS_CONNECTION_STRING",
    "ACS_ENDPOINT",
    "ACS_RESOURCE_ID",
    "ARCHIVE_STORAGE_CONNECTION_STRING",
    "ARCHIVE_STORAGE_ACCOUNT_URL",
    "ARCHIVE_CONTAINER",
    "CHUNK_QUEUE_NAME",
    "RECORDING_ALLOWED_HOSTS",
    "RECORDING_ALLOW_HTTP",
    "RECORDING_RETENTION_HOURS",
    "WEBHOOK_KEY",
    "WEBHOOK_ENTRA_TENANT_ID",
    "WEBHOOK_ENTRA_AUDIENCE",
    "WEBHOOK_ENTRA_JWKS_URL",
    "WEBHOOK_MAX_BODY_BYTES",
    "WEBHOOK_MAX_EVENTS",
    "TRANSFER_BLOCK_SIZE_MIB",
    "TRANSFER_CONCURRENCY",
    "QUEUE_REQUEUE_DELAY_SECONDS",
    "ACS_READ_TIMEOUT_SECONDS",
    "ACS_RETRY_ATTEMPTS",
    "ACS_RETRY_INITIAL_WAIT_SECONDS",
    "ACS_RETRY_MAX_WAIT_SECONDS",
    "ACS_RETRY_BUDGET_SECONDS",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
)
_STORAGE_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


@dataclass(frozen=True)
class AcsCredentials:
    """Where ACS is and how to sign for it. ``access_key`` None means Entra ID."""

    endpoint: str
    access_key: str | None = field(default=None, repr=False)

    @property
    def endpoint_host(self) -> str:
        """The host the HMAC signature covers (sent as ``x-ms-host``)."""
        return urlsplit(self.endpoint).netloc


@dataclass(frozen=True)
class StorageTarget:
    """A storage account reached by connection string or by account URL + identity."""

    connection_string: str | None = field(default=None, repr=False)
    account_url: str | None = None


@dataclass(frozen=True)
class EntraDelivery:
    """Accept deliveries only with Event Grid's Entra ID token for this tenant and audience."""

    tenant_id: str
    audience: str
    jwks_url: str | None = None


@dataclass(frozen=True)
class RetrySettings:
    """Retries of one call to ACS within an attempt: tries and seconds per streak of failures."""

    attempts: int = 8
    initial_wait: float = 1.0
    max_wait: float = 60.0
    budget_seconds: float = 600.0


@dataclass(frozen=True)
class Settings:
    acs: AcsCredentials
    archive: StorageTarget
    archive_container: str
    queue: StorageTarget
    chunk_queue_name: str
    allowed_hosts: tuple[str, ...]
    allow_http: bool
    retention_hours: float
    webhook_key: str | None = field(default=None, repr=False)
    acs_resource_id: str | None = None
    block_size: int = 4 * MIB
    transfer_concurrency: int = 4
    requeue_delay_seconds: int = 300
    acs_read_timeout_seconds: float = 60.0
    acs_retry: RetrySettings = field(default_factory=lambda: RetrySettings())
    entra_delivery: EntraDelivery | None = None
    max_body_bytes: int = 4 * MIB
    max_events: int = 1000

    @property
    def poison_queue_name(self) -> str:
        return f"{self.chunk_queue_name}{POISON_SUFFIX}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build Settings from a mapping (default ``os.environ``); raise ConfigurationError."""
        env = os.environ if env is None else env
        _check_resolved(env)
        return cls(
            acs=_acs_credentials(env),
            archive=_storage_target(
                env, "ARCHIVE_STORAGE_CONNECTION_STRING", "ARCHIVE_STORAGE_ACCOUNT_URL", "the archive"
            ),
            archive_container=_name(env, "ARCHIVE_CONTAINER", DEFAULT_CONTAINER),
            queue=_queue_target(env),
            chunk_queue_name=_name(env, "CHUNK_QUEUE_NAME", DEFAULT_QUEUE_NAME, 63 - len(POISON_SUFFIX)),
            allowed_hosts=_allowed_hosts(env.get("RECORDING_ALLOWED_HOSTS", "")),
            allow_http=_bool(env, "RECORDING_ALLOW_HTTP", False),
            retention_hours=_positive_float(env, "RECORDING_RETENTION_HOURS", 24.0),
            webhook_key=env.get("WEBHOOK_KEY") or None,
            acs_resource_id=(env.get("ACS_RESOURCE_ID") or "").strip() or None,
            block_size=int(_positive_float(env, "TRANSFER_BLOCK_SIZE_MIB", 4) * MIB),
            transfer_concurrency=_count(env, "TRANSFER_CONCURRENCY", 4),
            requeue_delay_seconds=_count(env, "QUEUE_REQUEUE_DELAY_SECONDS", 300),
            acs_read_timeout_seconds=_positive_float(env, "ACS_READ_TIMEOUT_SECONDS", 60.0),
            acs_retry=RetrySettings(
                attempts=_count(env, "ACS_RETRY_ATTEMPTS", 8),
                initial_wait=_positive_float(env, "ACS_RETRY_INITIAL_WAIT_SECONDS", 1.0),
                max_wait=_positive_float(env, "ACS_RETRY_MAX_WAIT_SECONDS", 60.0),
                budget_seconds=_positive_float(env, "ACS_RETRY_BUDGET_SECONDS", 600.0),
            ),
            max_body_bytes=_count(env, "WEBHOOK_MAX_BODY_BYTES", 4 * MIB),
            max_events=_count(env, "WEBHOOK_MAX_EVENTS", 1000),
            entra_delivery=_entra_delivery(env),
        )


def _check_resolved(env: Mapping[str, str]) -> None:
    """An app setting whose Key Vault reference the platform could not resolve reaches us as its literal text.

    Named, not used: an unresolved reference usually means the app's identity has no role on the vault yet
    (https://learn.microsoft.com/azure/app-service/app-service-key-vault-references).
    """
    for key, value in env.items():
        ours = key in SETTING_NAMES or key.startswith("AzureWebJobsStorage")
        if ours and isinstance(value, str) and value.lstrip().lower().startswith(KEY_VAULT_REFERENCE):
            raise ConfigurationError(
                f"{key} is an unresolved Key Vault reference: grant the app's identity 'Key Vault Secrets User' on "
                "the vault, then restart the app or change any app setting (the platform fetches it again)"
            )


def parse_acs_connection_string(value: str) -> AcsCredentials:
    """``endpoint=https://NAME.communication.azure.com/;accesskey=BASE64`` → credentials."""
    parts: dict[str, str] = {}
    for piece in value.split(";"):
        if not piece.strip():
            continue
        name, sep, val = piece.partition("=")
        if not sep:
            raise ConfigurationError("ACS_CONNECTION_STRING must be 'endpoint=...;accesskey=...'")
        parts[name.strip().lower()] = val.strip()
    endpoint, key = parts.get("endpoint"), parts.get("accesskey")
    if not endpoint or not key:
        raise ConfigurationError("ACS_CONNECTION_STRING needs both endpoint= and accesskey=")
    try:
        base64.b64decode(key, validate=True)
    except ValueError:
        raise ConfigurationError("ACS_CONNECTION_STRING: accesskey is not base64") from None
    return AcsCredentials(endpoint=_endpoint(endpoint, "ACS_CONNECTION_STRING"), access_key=key)


def _entra_delivery(env: Mapping[str, str]) -> EntraDelivery | None:
    tenant = (env.get("WEBHOOK_ENTRA_TENANT_ID") or "").strip()
    audience = (env.get("WEBHOOK_ENTRA_AUDIENCE") or "").strip()
    if not tenant and not audience:
        return None
    if not (tenant and audience):
        raise ConfigurationError("set both WEBHOOK_ENTRA_TENANT_ID and WEBHOOK_ENTRA_AUDIENCE, or neither")
    jwks = (env.get("WEBHOOK_ENTRA_JWKS_URL") or "").strip() or None
    return EntraDelivery(tenant, audience, jwks)


def _acs_credentials(env: Mapping[str, str]) -> AcsCredentials:
    conn = env.get("ACS_CONNECTION_STRING")
    if conn:
        return parse_acs_connection_string(conn)
    endpoint = env.get("ACS_ENDPOINT")
    if endpoint:
        return AcsCredentials(endpoint=_endpoint(endpoint, "ACS_ENDPOINT"))
    raise ConfigurationError("set ACS_CONNECTION_STRING (access key) or ACS_ENDPOINT (Entra ID)")


def _endpoint(value: str, name: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ConfigurationError(f"{name}: the ACS endpoint must be an absolute URL")
    return f"{parts.scheme}://{parts.netloc}"


def _storage_target(env: Mapping[str, str], conn_name: str, url_name: str, what: str) -> StorageTarget:
    conn, url = env.get(conn_name), env.get(url_name)
    if conn:
        return StorageTarget(connection_string=conn)
    if url:
        return StorageTarget(account_url=url.rstrip("/"))
    raise ConfigurationError(f"set {conn_name} or {url_name} for {what}")


def _queue_target(env: Mapping[str, str]) -> StorageTarget:
    """The Functions host's own storage: ``AzureWebJobsStorage`` or its identity-based form."""
    conn = env.get("AzureWebJobsStorage")
    if conn:
        return StorageTarget(connection_string=conn)
    url = env.get("AzureWebJobsStorage__queueServiceUri")
    if url:
        return StorageTarget(account_url=url.rstrip("/"))
    account = env.get("AzureWebJobsStorage__accountName")
    if account:
        return StorageTarget(account_url=f"https://{account}.queue.core.windows.net")
    raise ConfigurationError("set AzureWebJobsStorage (or AzureWebJobsStorage__accountName) for the chunk queue")


def _allowed_hosts(raw: str) -> tuple[str, ...]:
    entries = tuple(h.strip().lower() for h in raw.split(",") if h.strip())
    for entry in entries:
        bare = entry.removeprefix(".")
        if not bare or "/" in bare or "@" in bare or bare.startswith("."):
            raise ConfigurationError(f"RECORDING_ALLOWED_HOSTS: '{entry}' is not a host or .suffix")
    return entries or DEFAULT_ALLOWED_HOSTS


def _name(env: Mapping[str, str], key: str, default: str, max_length: int = 63) -> str:
    value = (env.get(key) or default).strip()
    if not (3 <= len(value) <= max_length) or not _STORAGE_NAME.fullmatch(value):
        raise ConfigurationError(f"{key}: '{value}' is not a valid storage container/queue name")
    return value


def _bool(env: Mapping[str, str], key: str, default: bool) -> bool:
    raw = env.get(key)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{key}: expected true or false, got '{raw}'")


def _positive_float(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{key}: expected a number, got '{raw}'") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"{key}: must be a positive finite number, got '{raw}'")
    return value


def _count(env: Mapping[str, str], key: str, default: float) -> int:
    value = _positive_float(env, key, default)
    if value < 1:
        raise ConfigurationError(f"{key}: must be at least 1, got '{env.get(key)}'")
    return int(value)
