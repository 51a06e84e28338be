"""Environment (Functions app settings) → frozen settings, grouped by who uses them, validated once.

Read once per process and passed to the clients, so a bad setting fails at
start-up with a clear message instead of on the first recording. Each group
loads on its own, so an operator command asks only for what it uses (``status``
needs the archive, not ACS's key). Every default and every bound is declared
once, in SPECS; README's configuration table states the same (a test compares).
"""

from __future__ import annotations

import base64
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import urlsplit

from recording_pipeline.core.connection_strings import (
    check_account_name,
    check_account_url,
    check_connection_string,
)
from recording_pipeline.core.errors import ConfigurationError
from recording_pipeline.core.urls import UrlPolicy

DEFAULT_ALLOWED_HOSTS = (".asm.skype.com", ".asyncgw.teams.microsoft.com", ".ams.gov.teams.microsoft.us")
MIB = 1024 * 1024
POISON_SUFFIX = "-poison"
KEY_VAULT_REFERENCE = "@microsoft.keyvault("
_STORAGE_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


class Spec(NamedTuple):
    """One number setting: its default and the range the app can keep its promises in."""

    default: float
    low: float
    high: float
    whole: bool = False  # a count: truncated to an integer, and at least 1 after truncation


SPECS: dict[str, Spec] = {
    "RECORDING_RETENTION_HOURS": Spec(24, 0.01, 24 * 30),
    "TRANSFER_BLOCK_SIZE_MIB": Spec(4, 0.0625, 4000),  # a block holds at most 4000 MiB
    "TRANSFER_CONCURRENCY": Spec(4, 1, 64, whole=True),
    "QUEUE_REQUEUE_DELAY_SECONDS": Spec(300, 1, 86400, whole=True),
    "ACS_READ_TIMEOUT_SECONDS": Spec(60, 1, 3600),
    "ACS_RETRY_ATTEMPTS": Spec(8, 1, 100, whole=True),
    "ACS_RETRY_INITIAL_WAIT_SECONDS": Spec(1, 0.001, 600),
    "ACS_RETRY_MAX_WAIT_SECONDS": Spec(60, 0.001, 3600),
    "ACS_RETRY_BUDGET_SECONDS": Spec(600, 1, 86400),
    "WEBHOOK_MAX_BODY_BYTES": Spec(4 * MIB, 1024, 100 * MIB, whole=True),  # the HTTP trigger takes 100 MB at most
    "WEBHOOK_MAX_EVENTS": Spec(1000, 1, 5000, whole=True),
    "FIXITY_BYTES_PER_DAY": Spec(10 * 1024**3, 1, 64 * 1024**4, whole=True),  # 10 GiB a day; at most 64 TiB
}
NAMES = {
    "ARCHIVE_CONTAINER": "recordings",
    "ARCHIVE_STATE_CONTAINER": "recordings-state",
    "CHUNK_QUEUE_NAME": "recording-chunks",
    "DEADLETTER_CONTAINER": "eventgrid-deadletter",
}
DEFAULT_CONTAINER = NAMES["ARCHIVE_CONTAINER"]
DEFAULT_QUEUE_NAME = NAMES["CHUNK_QUEUE_NAME"]

# Every app setting the app reads (besides AzureWebJobsStorage*), documented in README and local.settings.sample.json.
SETTING_NAMES = (
    "ACS_CONNECTION_STRING",
    "ACS_ENDPOINT",
    "ACS_RESOURCE_ID",
    "ARCHIVE_STORAGE_CONNECTION_STRING",
    "ARCHIVE_STORAGE_ACCOUNT_URL",
    *NAMES,
    "RECORDING_ALLOWED_HOSTS",
    "RECORDING_ALLOW_HTTP",
    "WEBHOOK_ENTRA_TENANT_ID",
    "WEBHOOK_ENTRA_AUDIENCE",
    "WEBHOOK_ENTRA_JWKS_URL",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "OUTBOUND_EVENTS_TOPIC_ENDPOINT",
    "OUTBOUND_EVENTS_TOPIC_KEY",
    "DEADLETTER_REDRIVE_ON_SCHEDULE",
    *SPECS,
)


# --- the groups ----------------------------------------------------------------------------------


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
    """A storage account reached by connection string or by account URL + identity; ``setting``: which app setting
    said so, for the messages that name it."""

    connection_string: str | None = field(default=None, repr=False)
    account_url: str | None = None
    setting: str = field(default="", compare=False)


@dataclass(frozen=True)
class RetrySettings:
    """Retries of one call to ACS within an attempt: tries and seconds per streak of failures."""

    attempts: int
    initial_wait: float
    max_wait: float
    budget_seconds: float


@dataclass(frozen=True)
class AcsSettings:
    """The worker's ACS client."""

    credentials: AcsCredentials
    read_timeout_seconds: float
    retry: RetrySettings

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AcsSettings:
        return cls(
            _acs_credentials(env),
            _number(env, "ACS_READ_TIMEOUT_SECONDS"),
            RetrySettings(
                attempts=int(_number(env, "ACS_RETRY_ATTEMPTS")),
                initial_wait=_number(env, "ACS_RETRY_INITIAL_WAIT_SECONDS"),
                max_wait=_number(env, "ACS_RETRY_MAX_WAIT_SECONDS"),
                budget_seconds=_number(env, "ACS_RETRY_BUDGET_SECONDS"),
            ),
        )


@dataclass(frozen=True)
class RecordingUrls:
    """Which recording URLs may receive our credentials (webhook and worker alike)."""

    allowed_hosts: tuple[str, ...]
    allow_http: bool

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RecordingUrls:
        return cls(_allowed_hosts(env.get("RECORDING_ALLOWED_HOSTS", "")), _bool(env, "RECORDING_ALLOW_HTTP", False))

    def policy(self, acs: AcsCredentials) -> UrlPolicy:
        return UrlPolicy(self.allowed_hosts, self.allow_http, acs.endpoint_host)


@dataclass(frozen=True)
class ArchiveSettings:
    """The customer's archive account: the write-once archive container, and the container of mutable state
    (manifests, quarantine, locks, holds) beside it. What every operator command needs, and nothing more."""

    target: StorageTarget
    container: str
    state_container: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ArchiveSettings:
        _check_resolved(env)
        target = _storage_target(env, "ARCHIVE_STORAGE_CONNECTION_STRING", "ARCHIVE_STORAGE_ACCOUNT_URL", "the archive")
        container, state = _name(env, "ARCHIVE_CONTAINER"), _name(env, "ARCHIVE_STATE_CONTAINER")
        if container == state:
            raise ConfigurationError(
                "ARCHIVE_STATE_CONTAINER must differ from ARCHIVE_CONTAINER: the archive is write-once"
            )
        return cls(target, container, state)


@dataclass(frozen=True)
class QueueSettings:
    """The chunk queue in the Functions host's own storage, and how long a job waits when it comes back."""

    target: StorageTarget
    name: str
    requeue_delay_seconds: int

    @property
    def poison_name(self) -> str:
        return f"{self.name}{POISON_SUFFIX}"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> QueueSettings:
        _check_resolved(env)
        return cls(
            _queue_target(env),
            _name(env, "CHUNK_QUEUE_NAME", 63 - len(POISON_SUFFIX)),
            int(_number(env, "QUEUE_REQUEUE_DELAY_SECONDS")),
        )


@dataclass(frozen=True)
class EntraDelivery:
    """Accept deliveries only with Event Grid's Entra ID token for this tenant and audience."""

    tenant_id: str
    audience: str
    jwks_url: str | None = None


@dataclass(frozen=True)
class WebhookSettings:
    retention_hours: float
    acs_resource_id: str | None
    max_body_bytes: int
    max_events: int
    entra: EntraDelivery | None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WebhookSettings:
        return cls(
            retention_hours=_number(env, "RECORDING_RETENTION_HOURS"),
            acs_resource_id=(env.get("ACS_RESOURCE_ID") or "").strip() or None,
            max_body_bytes=int(_number(env, "WEBHOOK_MAX_BODY_BYTES")),
            max_events=int(_number(env, "WEBHOOK_MAX_EVENTS")),
            entra=_entra_delivery(env),
        )


@dataclass(frozen=True)
class TransferSettings:
    block_size: int
    concurrency: int

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TransferSettings:
        return cls(
            int(_number(env, "TRANSFER_BLOCK_SIZE_MIB") * MIB),
            int(_number(env, "TRANSFER_CONCURRENCY")),
        )


@dataclass(frozen=True)
class FixitySettings:
    """The fixity audit: how many bytes of archived media it may re-hash a day (app/fixity)."""

    bytes_per_day: int = int(SPECS["FIXITY_BYTES_PER_DAY"].default)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> FixitySettings:
        return cls(int(_number(env, "FIXITY_BYTES_PER_DAY")))


@dataclass(frozen=True)
class OutboundEventsSettings:
    """The Event Grid topic that hears what became of each chunk and recording; publishing is off without one.

    In Azure the app's managed identity publishes (EventGrid Data Sender, the topic's keys disabled); an access key
    is for topics that still take one, and for loopback tests.
    """

    endpoint: str | None
    access_key: str | None = field(default=None, repr=False)

    @property
    def enabled(self) -> bool:
        return self.endpoint is not None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OutboundEventsSettings:
        endpoint = (env.get("OUTBOUND_EVENTS_TOPIC_ENDPOINT") or "").strip()
        key = (env.get("OUTBOUND_EVENTS_TOPIC_KEY") or "").strip() or None
        if not endpoint:
            if key:
                raise ConfigurationError("OUTBOUND_EVENTS_TOPIC_KEY is set without OUTBOUND_EVENTS_TOPIC_ENDPOINT")
            return cls(None)
        parts = urlsplit(endpoint)
        loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
        if not parts.hostname or parts.username or parts.password or parts.query or parts.fragment:
            raise ConfigurationError(
                "OUTBOUND_EVENTS_TOPIC_ENDPOINT: expected https://TOPIC.REGION.eventgrid.azure.net/api/events"
            )
        if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
            raise ConfigurationError("OUTBOUND_EVENTS_TOPIC_ENDPOINT must be https (http only on loopback, for tests)")
        if parts.scheme == "http" and key is None:
            raise ConfigurationError("OUTBOUND_EVENTS_TOPIC_ENDPOINT: identity tokens are sent over https only")
        return cls(endpoint, key)


@dataclass(frozen=True)
class DeadLetterSettings:
    """Event Grid's dead-letter container, in the archive account beside the archive (infra creates it and points
    the subscription's dead-lettering at it), and whether the app's timer redrives what it finds there or only
    reports it (``recording-archive replay --deadletter`` then redrives)."""

    container: str = NAMES["DEADLETTER_CONTAINER"]
    redrive_on_schedule: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DeadLetterSettings:
        container = _name(env, "DEADLETTER_CONTAINER")
        if container in (_name(env, "ARCHIVE_CONTAINER"), _name(env, "ARCHIVE_STATE_CONTAINER")):
            raise ConfigurationError(
                "DEADLETTER_CONTAINER must differ from ARCHIVE_CONTAINER and ARCHIVE_STATE_CONTAINER: "
                "it holds what Event Grid wrote"
            )
        return cls(container, _bool(env, "DEADLETTER_REDRIVE_ON_SCHEDULE", True))


@dataclass(frozen=True)
class Settings:
    """Everything function_app.py needs."""

    acs: AcsSettings
    urls: RecordingUrls
    archive: ArchiveSettings
    queue: QueueSettings
    webhook: WebhookSettings
    transfer: TransferSettings
    events: OutboundEventsSettings = OutboundEventsSettings(None)
    deadletter: DeadLetterSettings = DeadLetterSettings()
    fixity: FixitySettings = FixitySettings()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build Settings from a mapping (default ``os.environ``); raise ConfigurationError."""
        env = os.environ if env is None else env
        _check_resolved(env)
        return cls(
            acs=AcsSettings.from_env(env),
            urls=RecordingUrls.from_env(env),
            archive=ArchiveSettings.from_env(env),
            queue=QueueSettings.from_env(env),
            webhook=WebhookSettings.from_env(env),
            transfer=TransferSettings.from_env(env),
            events=OutboundEventsSettings.from_env(env),
            deadletter=DeadLetterSettings.from_env(env),
            fixity=FixitySettings.from_env(env),
        )

    @property
    def url_policy(self) -> UrlPolicy:
        return self.urls.policy(self.acs.credentials)


def setting_problems(env: Mapping[str, str]) -> list[str]:
    """Every missing or malformed setting at once, each said once (``Settings.from_env`` stops at the first): for
    ``recording-archive check``. A setting that is an unresolved Key Vault reference is left to the check's own
    line about references; so is any complaint that names it."""
    unresolved = {key for key, value in env.items() if _is_reference(key, value)}
    usable = {key: value for key, value in env.items() if key not in unresolved}
    archive = ("ARCHIVE_STORAGE_CONNECTION_STRING", "ARCHIVE_STORAGE_ACCOUNT_URL", "the archive")
    checks: list[Callable[[], object]] = [
        lambda: _acs_credentials(usable),
        lambda: _storage_target(usable, *archive),
        lambda: _queue_target(usable),
        *(lambda key=key: _name(usable, key) for key in NAMES),
        lambda: _name(usable, "CHUNK_QUEUE_NAME", 63 - len(POISON_SUFFIX)),
        *(lambda key=key: _number(usable, key) for key in SPECS),
        lambda: RecordingUrls.from_env(usable),
        lambda: _entra_delivery(usable),
        lambda: OutboundEventsSettings.from_env(usable),
        lambda: Settings.from_env(usable),  # and the rules across settings
    ]
    found: dict[str, None] = {}
    for check in checks:
        try:
            check()
        except ConfigurationError as exc:
            found.setdefault(str(exc))
    return [problem for problem in found if not any(name in problem for name in unresolved)]


# --- reading the environment ---------------------------------------------------------------------


def _check_resolved(env: Mapping[str, str]) -> None:
    """An app setting whose Key Vault reference the platform could not resolve reaches us as its literal text.

    Named, not used: an unresolved reference usually means the app's identity has no role on the vault yet
    (https://learn.microsoft.com/azure/app-service/app-service-key-vault-references).
    """
    for key, value in env.items():
        if _is_reference(key, value):
            raise ConfigurationError(
                f"{key} is an unresolved Key Vault reference: grant the app's identity 'Key Vault Secrets User' on "
                "the vault, then restart the app or change any app setting (the platform fetches it again)"
            )


def _is_reference(key: str, value: object) -> bool:
    ours = key in SETTING_NAMES or key.startswith("AzureWebJobsStorage")
    return ours and isinstance(value, str) and value.lstrip().lower().startswith(KEY_VAULT_REFERENCE)


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
        check_connection_string(conn, conn_name, "blob")
        return StorageTarget(connection_string=conn, setting=conn_name)
    if url:
        return StorageTarget(account_url=check_account_url(url, url_name), setting=url_name)
    raise ConfigurationError(f"set {conn_name} or {url_name} for {what}")


def _queue_target(env: Mapping[str, str]) -> StorageTarget:
    """The Functions host's own storage: ``AzureWebJobsStorage`` or its identity-based form."""
    conn = env.get("AzureWebJobsStorage")
    if conn:
        check_connection_string(conn, "AzureWebJobsStorage", "queue")
        return StorageTarget(connection_string=conn, setting="AzureWebJobsStorage")
    url_name = "AzureWebJobsStorage__queueServiceUri"
    url = env.get(url_name)
    if url:
        return StorageTarget(account_url=check_account_url(url, url_name), setting=url_name)
    name = "AzureWebJobsStorage__accountName"
    account = env.get(name)
    if account:
        account = check_account_name(account, name)
        return StorageTarget(account_url=f"https://{account}.queue.core.windows.net", setting=name)
    raise ConfigurationError("set AzureWebJobsStorage (or AzureWebJobsStorage__accountName) for the chunk queue")


def _allowed_hosts(raw: str) -> tuple[str, ...]:
    entries = tuple(h.strip().lower() for h in raw.split(",") if h.strip())
    for entry in entries:
        bare = entry.removeprefix(".")
        if not bare or "/" in bare or "@" in bare or bare.startswith("."):
            raise ConfigurationError(f"RECORDING_ALLOWED_HOSTS: '{entry}' is not a host or .suffix")
    return entries or DEFAULT_ALLOWED_HOSTS


def _name(env: Mapping[str, str], key: str, max_length: int = 63) -> str:
    value = (env.get(key) or NAMES[key]).strip()
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


def _number(env: Mapping[str, str], key: str) -> float:
    """SPECS[key]'s value from ``env``, its default if unset; out of range or not a number: ConfigurationError."""
    spec = SPECS[key]
    raw = env.get(key)
    if raw is None or raw.strip() == "":
        return spec.default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{key}: expected a number, got '{raw}'") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"{key}: must be a positive finite number, got '{raw}'")
    if spec.whole:
        value = float(int(value))
    if not spec.low <= value <= spec.high:
        raise ConfigurationError(f"{key}: must be between {spec.low:g} and {spec.high:g}, got '{raw}'")
    return value
