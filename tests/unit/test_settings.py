"""Settings.from_env: every app setting is read, validated and kept out of repr."""

from __future__ import annotations

import base64
import json
import re

import pytest

from recording_pipeline.core.errors import ConfigurationError
from recording_pipeline.core.settings import (
    DEFAULT_ALLOWED_HOSTS,
    DEFAULT_CONTAINER,
    DEFAULT_QUEUE_NAME,
    MIB,
    NAMES,
    SETTING_NAMES,
    SPECS,
    AcsCredentials,
    DeadLetterSettings,
    RetrySettings,
    Settings,
    Spec,
    StorageTarget,
    parse_acs_connection_string,
    setting_problems,
)
from tests.support.stack import REPO

ACCESS_KEY = base64.b64encode(b"a-very-secret-acs-access-key-0123456789").decode()
ACS_CONN = f"endpoint=https://acs-prod.communication.azure.com/;accesskey={ACCESS_KEY}"
ARCHIVE_CONN = (
    "DefaultEndpointsProtocol=https;AccountName=archive;AccountKey=YXJjaGl2ZS1rZXk=;EndpointSuffix=core.windows.net"
)
QUEUE_CONN = (
    "DefaultEndpointsProtocol=https;AccountName=funcstore;AccountKey=ZnVuYy1rZXk=;EndpointSuffix=core.windows.net"
)
WEBHOOK_KEY = "whk-Zm9vYmFyLXdlYmhvb2sta2V5"

BASE = {
    "ACS_CONNECTION_STRING": ACS_CONN,
    "ARCHIVE_STORAGE_CONNECTION_STRING": ARCHIVE_CONN,
    "AzureWebJobsStorage": QUEUE_CONN,
}


def load(**overrides: str | None) -> Settings:
    env = {**BASE, **overrides}
    return Settings.from_env({k: v for k, v in env.items() if v is not None})


# --- ACS credentials ------------------------------------------------------------------------------


def test_connection_string_gives_endpoint_and_access_key() -> None:
    acs = load().acs.credentials
    assert acs.endpoint == "https://acs-prod.communication.azure.com"
    assert acs.access_key == ACCESS_KEY
    assert acs.endpoint_host == "acs-prod.communication.azure.com"


@pytest.mark.parametrize(
    "value",
    [
        f"Endpoint=https://acs-prod.communication.azure.com/;AccessKey={ACCESS_KEY}",
        f" endpoint = https://acs-prod.communication.azure.com ; accesskey = {ACCESS_KEY} ;",
        f"accesskey={ACCESS_KEY};endpoint=https://acs-prod.communication.azure.com/some/path",
    ],
)
def test_connection_string_parsing_is_tolerant_of_case_order_and_spacing(value: str) -> None:
    assert parse_acs_connection_string(value) == AcsCredentials("https://acs-prod.communication.azure.com", ACCESS_KEY)


def test_connection_string_keeps_base64_padding_in_the_key() -> None:
    key = base64.b64encode(b"k" * 31).decode()
    assert key.endswith("=")
    creds = parse_acs_connection_string(f"endpoint=https://x.communication.azure.com/;accesskey={key}")
    assert creds.access_key == key


def test_connection_string_endpoint_with_port_keeps_it_in_the_signed_host() -> None:
    creds = parse_acs_connection_string(f"endpoint=http://127.0.0.1:8787/;accesskey={ACCESS_KEY}")
    assert creds.endpoint == "http://127.0.0.1:8787"
    assert creds.endpoint_host == "127.0.0.1:8787"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("endpoint=https://x.communication.azure.com/;accesskey=not*base64!", "accesskey is not base64"),
        ("endpoint=https://x.communication.azure.com/;accesskey=abc", "accesskey is not base64"),
        ("endpoint=https://x.communication.azure.com/", "needs both endpoint= and accesskey="),
        (f"accesskey={ACCESS_KEY}", "needs both endpoint= and accesskey="),
        ("endpoint=https://x.communication.azure.com/;accesskey=", "needs both endpoint= and accesskey="),
        (f"endpoint=;accesskey={ACCESS_KEY}", "needs both endpoint= and accesskey="),
        ("just-some-text", "must be 'endpoint=...;accesskey=...'"),
        (f"https://x.communication.azure.com/;accesskey={ACCESS_KEY}", "must be 'endpoint=...;accesskey=...'"),
        (f"endpoint=x.communication.azure.com;accesskey={ACCESS_KEY}", "must be an absolute URL"),
        (f"endpoint=ftp://x.communication.azure.com;accesskey={ACCESS_KEY}", "must be an absolute URL"),
    ],
)
def test_bad_connection_strings_are_rejected(value: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match="ACS_CONNECTION_STRING") as info:
        parse_acs_connection_string(value)
    assert message in str(info.value)


def test_bad_connection_string_fails_from_env() -> None:
    with pytest.raises(ConfigurationError, match="ACS_CONNECTION_STRING: accesskey is not base64"):
        load(ACS_CONNECTION_STRING="endpoint=https://x.communication.azure.com/;accesskey=%%%")


def test_acs_endpoint_alone_means_entra_id() -> None:
    settings = load(ACS_CONNECTION_STRING=None, ACS_ENDPOINT="https://acs-prod.communication.azure.com/")
    assert settings.acs.credentials == AcsCredentials("https://acs-prod.communication.azure.com", None)


def test_connection_string_wins_over_acs_endpoint() -> None:
    settings = load(ACS_ENDPOINT="https://other.communication.azure.com")
    assert settings.acs.credentials.endpoint == "https://acs-prod.communication.azure.com"
    assert settings.acs.credentials.access_key == ACCESS_KEY


def test_bad_acs_endpoint_is_rejected_by_name() -> None:
    with pytest.raises(ConfigurationError, match=r"^ACS_ENDPOINT: "):
        load(ACS_CONNECTION_STRING=None, ACS_ENDPOINT="acs-prod.communication.azure.com")


@pytest.mark.parametrize("empty", [None, ""])
def test_neither_connection_string_nor_endpoint_is_an_error(empty: str | None) -> None:
    with pytest.raises(ConfigurationError, match=r"ACS_CONNECTION_STRING.*ACS_ENDPOINT"):
        load(ACS_CONNECTION_STRING=empty, ACS_ENDPOINT=empty)


# --- storage targets ------------------------------------------------------------------------------


def test_archive_by_connection_string() -> None:
    assert load().archive.target == StorageTarget(connection_string=ARCHIVE_CONN)


def test_archive_by_account_url() -> None:
    settings = load(
        ARCHIVE_STORAGE_CONNECTION_STRING=None, ARCHIVE_STORAGE_ACCOUNT_URL="https://archive.blob.core.windows.net/"
    )
    assert settings.archive.target == StorageTarget(account_url="https://archive.blob.core.windows.net")


def test_archive_connection_string_wins_over_account_url() -> None:
    settings = load(ARCHIVE_STORAGE_ACCOUNT_URL="https://archive.blob.core.windows.net")
    assert settings.archive.target.connection_string == ARCHIVE_CONN
    assert settings.archive.target.account_url is None


def test_archive_missing_is_an_error_naming_both_settings() -> None:
    with pytest.raises(ConfigurationError, match="ARCHIVE_STORAGE_CONNECTION_STRING or ARCHIVE_STORAGE_ACCOUNT_URL"):
        load(ARCHIVE_STORAGE_CONNECTION_STRING=None)


def test_queue_by_azure_web_jobs_storage() -> None:
    assert load().queue.target == StorageTarget(connection_string=QUEUE_CONN)


def test_queue_by_identity_account_name() -> None:
    settings = load(AzureWebJobsStorage=None, AzureWebJobsStorage__accountName="funcstore")
    assert settings.queue.target == StorageTarget(account_url="https://funcstore.queue.core.windows.net")


def test_queue_by_identity_queue_service_uri() -> None:
    settings = load(
        AzureWebJobsStorage=None,
        AzureWebJobsStorage__queueServiceUri="https://funcstore.queue.core.usgovcloudapi.net/",
        AzureWebJobsStorage__accountName="ignored",
    )
    assert settings.queue.target == StorageTarget(account_url="https://funcstore.queue.core.usgovcloudapi.net")


def test_queue_missing_is_an_error_naming_the_setting() -> None:
    with pytest.raises(ConfigurationError, match="AzureWebJobsStorage"):
        load(AzureWebJobsStorage=None)


def test_a_malformed_storage_setting_is_named_when_read_not_by_the_sdk_later() -> None:
    with pytest.raises(ConfigurationError, match=r"^ARCHIVE_STORAGE_CONNECTION_STRING is not a connection string"):
        load(ARCHIVE_STORAGE_CONNECTION_STRING="garbage")
    with pytest.raises(ConfigurationError, match=r"^ARCHIVE_STORAGE_ACCOUNT_URL must be a URL"):
        load(ARCHIVE_STORAGE_CONNECTION_STRING=None, ARCHIVE_STORAGE_ACCOUNT_URL="archive")
    with pytest.raises(ConfigurationError, match=r"^AzureWebJobsStorage: its AccountKey is not base64"):
        load(AzureWebJobsStorage="AccountName=funcstore;AccountKey=%%%")
    assert load().archive.target.setting == "ARCHIVE_STORAGE_CONNECTION_STRING"


# --- every problem at once (check) ----------------------------------------------------------------


def test_with_no_settings_every_missing_one_is_named_at_once() -> None:
    problems = setting_problems({})
    assert problems == [
        "set ACS_CONNECTION_STRING (access key) or ACS_ENDPOINT (Entra ID)",
        "set ARCHIVE_STORAGE_CONNECTION_STRING or ARCHIVE_STORAGE_ACCOUNT_URL for the archive",
        "set AzureWebJobsStorage (or AzureWebJobsStorage__accountName) for the chunk queue",
    ]


def test_every_malformed_setting_is_named_once_and_a_good_set_has_none() -> None:
    assert setting_problems(BASE) == []
    problems = setting_problems(
        {
            **BASE,
            "ARCHIVE_STORAGE_CONNECTION_STRING": "garbage",
            "ARCHIVE_CONTAINER": "Not_A_Name",
            "TRANSFER_CONCURRENCY": "lots",
            "RECORDING_ALLOW_HTTP": "maybe",
            "WEBHOOK_ENTRA_TENANT_ID": "t",
        }
    )
    assert [p.split(":")[0].split(" ")[0] for p in problems] == [
        "ARCHIVE_STORAGE_CONNECTION_STRING",
        "ARCHIVE_CONTAINER",
        "TRANSFER_CONCURRENCY",
        "RECORDING_ALLOW_HTTP",
        "set",  # both WEBHOOK_ENTRA_TENANT_ID and WEBHOOK_ENTRA_AUDIENCE
    ]
    assert len(set(problems)) == len(problems)
    assert setting_problems({**BASE, "ARCHIVE_STATE_CONTAINER": "recordings"}) == [
        "ARCHIVE_STATE_CONTAINER must differ from ARCHIVE_CONTAINER: the archive is write-once"
    ]


def test_a_setting_left_as_a_key_vault_reference_is_left_to_the_reference_check() -> None:
    env = {**BASE, "ACS_CONNECTION_STRING": "@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/secrets/acs/)"}
    assert setting_problems(env) == []
    with pytest.raises(ConfigurationError, match="unresolved Key Vault reference"):
        Settings.from_env(env)


# --- defaults and validation ----------------------------------------------------------------------


def test_defaults() -> None:
    settings = load()
    assert settings.archive.container == DEFAULT_CONTAINER == "recordings"
    assert settings.queue.name == DEFAULT_QUEUE_NAME == "recording-chunks"
    assert settings.queue.poison_name == "recording-chunks-poison"
    assert settings.urls.allowed_hosts == DEFAULT_ALLOWED_HOSTS
    assert DEFAULT_ALLOWED_HOSTS == (".asm.skype.com", ".asyncgw.teams.microsoft.com", ".ams.gov.teams.microsoft.us")
    assert settings.urls.allow_http is False
    assert settings.webhook.retention_hours == 24.0
    assert settings.webhook.acs_resource_id is None
    assert settings.transfer.block_size == 4 * MIB
    assert settings.transfer.concurrency == 4
    assert settings.acs.retry == RetrySettings(attempts=8, initial_wait=1.0, max_wait=60.0, budget_seconds=600.0)
    assert (settings.webhook.max_body_bytes, settings.webhook.max_events) == (4 * MIB, 1000)


def test_overrides_are_read() -> None:
    settings = load(
        ARCHIVE_CONTAINER="call-archive",
        CHUNK_QUEUE_NAME="chunks-01",
        RECORDING_ALLOWED_HOSTS=" 127.0.0.1 , .Example.COM ,",
        RECORDING_ALLOW_HTTP="Yes",
        RECORDING_RETENTION_HOURS="48",
        WEBHOOK_KEY=WEBHOOK_KEY,
        ACS_RESOURCE_ID="  /subscriptions/s/resourceGroups/rg  ",
        TRANSFER_BLOCK_SIZE_MIB="0.5",
        TRANSFER_CONCURRENCY="8",
    )
    assert (settings.archive.container, settings.queue.name) == ("call-archive", "chunks-01")
    assert settings.queue.poison_name == "chunks-01-poison"
    assert settings.urls.allowed_hosts == ("127.0.0.1", ".example.com")
    assert settings.urls.allow_http is True
    assert settings.webhook.retention_hours == 48.0
    assert settings.webhook.acs_resource_id == "/subscriptions/s/resourceGroups/rg"
    assert settings.transfer.block_size == MIB // 2
    assert settings.transfer.concurrency == 8


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("on", True), ("TRUE", True), ("0", False), ("off", False), ("No", False), ("", False)],
)
def test_booleans(raw: str, expected: bool) -> None:
    assert load(RECORDING_ALLOW_HTTP=raw).urls.allow_http is expected


@pytest.mark.parametrize("raw", ["maybe", "2", "enabled", "tru"])
def test_bad_booleans_name_the_setting(raw: str) -> None:
    with pytest.raises(ConfigurationError, match=f"^RECORDING_ALLOW_HTTP: expected true or false, got '{raw}'"):
        load(RECORDING_ALLOW_HTTP=raw)


@pytest.mark.parametrize("key", ["ARCHIVE_CONTAINER", "CHUNK_QUEUE_NAME"])
@pytest.mark.parametrize(
    "value",
    [
        "ab",
        "a" * 64,
        "Recordings",
        "rec_ordings",
        "rec.ordings",
        "rec ordings",
        "-recordings",
        "recordings-",
        "rec--ordings",
        "r\u00e9cordings",
    ],
)
def test_invalid_container_and_queue_names_name_the_setting(key: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=f"^{key}: "):
        load(**{key: value})


@pytest.mark.parametrize("key", ["ARCHIVE_CONTAINER", "CHUNK_QUEUE_NAME"])
@pytest.mark.parametrize("value", ["abc", "a" * 56, "rec-2024-05", "0recordings"])
def test_valid_container_and_queue_names(key: str, value: str) -> None:
    settings = load(**{key: value})
    assert (settings.archive.container if key == "ARCHIVE_CONTAINER" else settings.queue.name) == value


def test_queue_name_leaves_room_for_its_poison_queue() -> None:
    # The Functions host moves failed messages to "<queue>-poison", which must itself be a valid queue name.
    with pytest.raises(ConfigurationError, match=r"^CHUNK_QUEUE_NAME: "):
        load(CHUNK_QUEUE_NAME="q" * 63)


@pytest.mark.parametrize(
    "key",
    [
        "RECORDING_RETENTION_HOURS",
        "TRANSFER_BLOCK_SIZE_MIB",
        "TRANSFER_CONCURRENCY",
        "QUEUE_REQUEUE_DELAY_SECONDS",
        "ACS_RETRY_ATTEMPTS",
        "ACS_RETRY_BUDGET_SECONDS",
        "WEBHOOK_MAX_BODY_BYTES",
        "WEBHOOK_MAX_EVENTS",
    ],
)
@pytest.mark.parametrize("raw", ["0", "-1", "-0.5", "abc", "1e", "-inf"])
def test_non_positive_or_non_numeric_numbers_name_the_setting(key: str, raw: str) -> None:
    with pytest.raises(ConfigurationError, match=f"^{key}: "):
        load(**{key: raw})


@pytest.mark.parametrize("key", ["RECORDING_RETENTION_HOURS", "TRANSFER_CONCURRENCY"])
@pytest.mark.parametrize("raw", ["nan", "inf"])
def test_non_finite_numbers_name_the_setting(key: str, raw: str) -> None:
    # nan and inf pass a "<= 0" test; they must not reach timedelta() or int().
    with pytest.raises(ConfigurationError, match=f"^{key}: "):
        load(**{key: raw})


@pytest.mark.parametrize("key", ["TRANSFER_CONCURRENCY", "ACS_RETRY_ATTEMPTS"])
def test_counts_that_truncate_to_zero_are_rejected(key: str) -> None:
    with pytest.raises(ConfigurationError, match=f"^{key}: "):
        load(**{key: "0.5"})


@pytest.mark.parametrize("raw", ["a/b", "user@host", ".", "..example.com", "ok.example.com,a/b"])
def test_bad_allowed_hosts_are_rejected(raw: str) -> None:
    with pytest.raises(ConfigurationError, match=r"^RECORDING_ALLOWED_HOSTS: "):
        load(RECORDING_ALLOWED_HOSTS=raw)


def test_from_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in BASE.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ARCHIVE_CONTAINER", "from-os-environ")
    assert Settings.from_env().archive.container == "from-os-environ"


# --- secrets stay out of repr ---------------------------------------------------------------------


def test_repr_hides_secrets() -> None:
    settings = load(WEBHOOK_KEY=WEBHOOK_KEY)
    texts = (
        repr(settings),
        str(settings),
        repr(settings.acs),
        repr(settings.archive),
        repr(settings.queue),
    )
    for text in texts:
        assert ACCESS_KEY not in text
        assert WEBHOOK_KEY not in text
        assert "YXJjaGl2ZS1rZXk=" not in text
        assert "ZnVuYy1rZXk=" not in text
    assert "acs-prod.communication.azure.com" in repr(settings)


def test_blank_numbers_and_booleans_mean_the_default() -> None:
    settings = load(RECORDING_RETENTION_HOURS="  ", RECORDING_ALLOW_HTTP=" ", TRANSFER_CONCURRENCY="")
    assert (settings.webhook.retention_hours, settings.urls.allow_http, settings.transfer.concurrency) == (
        24.0,
        False,
        4,
    )


@pytest.mark.parametrize("key", ["ACS_CONNECTION_STRING", "ARCHIVE_STORAGE_CONNECTION_STRING", "AzureWebJobsStorage"])
def test_an_unresolved_key_vault_reference_is_named_not_used(key: str) -> None:
    """The platform hands an app setting it could not resolve to the app as its literal reference text."""
    literal = "@Microsoft.KeyVault(SecretUri=https://vault.vault.azure.net/secrets/acs-connection-string/)"
    with pytest.raises(ConfigurationError, match=f"^{key} is an unresolved Key Vault reference"):
        load(**{key: literal})


def test_a_key_vault_reference_in_a_setting_the_app_does_not_read_is_not_its_business() -> None:
    load(SOME_OTHER_APP_SETTING="@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/secrets/x/)")


# The Functions host's and the Python worker's own settings (the worker configures telemetry with the others:
# azure-functions-runtime's names, the 4.x worker's, and OpenTelemetry's sampler, which the distro reads).
FUNCTIONS_OWN = {
    "FUNCTIONS_WORKER_RUNTIME",
    "AzureWebJobsStorage",
    "AzureWebJobsFeatureFlags",
    "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY",
    "PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME",
    "PYTHON_ENABLE_OPENTELEMETRY",
    "PYTHON_AZURE_MONITOR_LOGGER_NAME",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
}
LOCAL_HOST_ONLY = {"WEBHOOK_KEY", "LOCAL_HOST_LEASE_SECONDS", "LOCAL_TELEMETRY_FILE"}  # devtools.local_host reads them


def test_every_setting_is_in_the_sample_and_the_readme_and_nothing_else_is() -> None:
    root = REPO
    sample = set(json.loads((root / "local.settings.sample.json").read_text())["Values"])
    assert sample == set(SETTING_NAMES) | FUNCTIONS_OWN | LOCAL_HOST_ONLY
    readme = (root / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Za-z_]+)` \|", readme, re.MULTILINE))
    worker_telemetry = {n for n in FUNCTIONS_OWN if n.startswith(("PYTHON_", "OTEL_"))}
    assert set(SETTING_NAMES) | LOCAL_HOST_ONLY | worker_telemetry <= documented


def test_the_readme_states_every_default_as_declared() -> None:
    readme = (REPO / "README.md").read_text()
    for name, spec in SPECS.items():
        default = str(int(spec.default)) if spec.default == int(spec.default) else f"{spec.default:g}"
        assert f"| `{name}` | `{default}` |" in readme, name
    for name, default in NAMES.items():
        assert f"| `{name}` | `{default}` |" in readme, name


@pytest.mark.parametrize(("name", "spec"), list(SPECS.items()))
def test_every_number_is_held_to_its_bounds(name: str, spec: Spec) -> None:
    above = spec.high * 2 + 1
    with pytest.raises(ConfigurationError, match=f"^{name}: must be between"):
        load(**{name: str(above)})


def test_outbound_events_are_off_without_a_topic() -> None:
    assert not load().events.enabled and load(OUTBOUND_EVENTS_TOPIC_ENDPOINT="  ").events.endpoint is None


def test_outbound_events_go_to_an_https_topic_with_the_identity_or_a_key_never_shown() -> None:
    endpoint = "https://archive-events.swedencentral-1.eventgrid.azure.net/api/events"
    events = load(OUTBOUND_EVENTS_TOPIC_ENDPOINT=endpoint).events
    assert (events.endpoint, events.access_key) == (endpoint, None)
    keyed = load(
        OUTBOUND_EVENTS_TOPIC_ENDPOINT="http://127.0.0.1:9/api/events", OUTBOUND_EVENTS_TOPIC_KEY="s3cret"
    ).events
    assert keyed.access_key == "s3cret" and "s3cret" not in repr(keyed)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OUTBOUND_EVENTS_TOPIC_KEY": "k"}, "without OUTBOUND_EVENTS_TOPIC_ENDPOINT"),
        ({"OUTBOUND_EVENTS_TOPIC_ENDPOINT": "http://topic.example.com/api/events"}, "must be https"),
        ({"OUTBOUND_EVENTS_TOPIC_ENDPOINT": "ftp://topic.example.com/api/events"}, "must be https"),
        ({"OUTBOUND_EVENTS_TOPIC_ENDPOINT": "http://127.0.0.1:9/api/events"}, "identity tokens are sent over https"),
        ({"OUTBOUND_EVENTS_TOPIC_ENDPOINT": "topic.example.com/api/events"}, "expected https://"),
        ({"OUTBOUND_EVENTS_TOPIC_ENDPOINT": "https://u:p@topic.example.com/api/events"}, "expected https://"),
        ({"OUTBOUND_EVENTS_TOPIC_ENDPOINT": "https://topic.example.com/api/events?code=x"}, "expected https://"),
    ],
)
def test_a_topic_the_app_cannot_publish_to_safely_is_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load(**env)


def test_the_dead_letter_container_is_event_grid_s_and_redriven_on_schedule_by_default() -> None:
    settings = load()
    assert settings.deadletter == DeadLetterSettings("eventgrid-deadletter", redrive_on_schedule=True)
    chosen = load(DEADLETTER_CONTAINER="dl-01", DEADLETTER_REDRIVE_ON_SCHEDULE="false").deadletter
    assert (chosen.container, chosen.redrive_on_schedule) == ("dl-01", False)


@pytest.mark.parametrize("other", ["ARCHIVE_CONTAINER", "ARCHIVE_STATE_CONTAINER"])
def test_the_dead_letter_container_is_neither_the_archive_nor_the_state(other: str) -> None:
    with pytest.raises(ConfigurationError, match=r"^DEADLETTER_CONTAINER must differ"):
        load(**{other: "shared-name", "DEADLETTER_CONTAINER": "shared-name"})
    with pytest.raises(ConfigurationError, match=r"^DEADLETTER_CONTAINER: 'Dead_Letters' is not a valid"):
        load(DEADLETTER_CONTAINER="Dead_Letters")
