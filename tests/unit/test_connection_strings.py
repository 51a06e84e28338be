"""core.connection_strings: what azure-storage would refuse is refused when the settings are read, naming the
setting and never echoing the value; what it takes is taken (each accepted value builds a real client)."""

from __future__ import annotations

import base64

import pytest
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient

from recording_pipeline.core.connection_strings import (
    check_account_name,
    check_account_url,
    check_connection_string,
)
from recording_pipeline.core.errors import ConfigurationError

KEY = base64.b64encode(b"a-secret-account-key-0123456789").decode()
AZURITE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6"
    "IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
)

ACCEPTED = [
    f"DefaultEndpointsProtocol=https;AccountName=archive;AccountKey={KEY};EndpointSuffix=core.windows.net",
    f"AccountName=archive;AccountKey={KEY}",
    f"accountname=archive;accountkey={KEY};",  # keys are case-insensitive, a trailing ';' is fine
    AZURITE,
    "UseDevelopmentStorage=true",
    "BlobEndpoint=https://archive.blob.core.windows.net;QueueEndpoint=https://archive.queue.core.windows.net;"
    "SharedAccessSignature=sv=2024-11-04&ss=bq&sig=abc",
]


@pytest.mark.parametrize("value", ACCEPTED)
def test_what_the_sdk_takes_is_taken(value: str) -> None:
    check_connection_string(value, "ARCHIVE_STORAGE_CONNECTION_STRING", "blob")
    check_connection_string(value, "AzureWebJobsStorage", "queue")
    BlobServiceClient.from_connection_string(value).close()
    QueueServiceClient.from_connection_string(value).close()


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("garbage", "is not a connection string"),
        ("", "is not a connection string"),
        ("AccountName=archive;AccountKey", "is not a connection string"),
        ("EndpointSuffix=core.windows.net", "neither AccountName nor BlobEndpoint"),
        (f"BlobSecondaryEndpoint=https://a-secondary.blob.core.windows.net;AccountKey={KEY}", "only a secondary"),
        (f"BlobEndpoint=not-a-url;AccountName=a;AccountKey={KEY}", "BlobEndpoint"),
        ("AccountName=archive;AccountKey=not*base64!", "AccountKey is not base64"),
        ("AccountName=archive", "no AccountName and AccountKey, nor a SharedAccessSignature"),
        (f"DefaultEndpointsProtocol=ftp;AccountName=a;AccountKey={KEY}", "DefaultEndpointsProtocol"),
        ("UseDevelopmentStorage=yes", "neither AccountName nor BlobEndpoint"),
    ],
)
def test_a_malformed_connection_string_is_named_with_its_fix_and_never_echoed(value: str, says: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        check_connection_string(value, "ARCHIVE_STORAGE_CONNECTION_STRING", "blob")
    message = str(raised.value)
    assert message.startswith("ARCHIVE_STORAGE_CONNECTION_STRING") and says in message
    assert "Access keys" in message or "https://" in message  # the fix
    assert KEY not in message and "base64!" not in message


def test_the_sdk_itself_refuses_the_unparseable_ones_only_with_a_traceback() -> None:
    """Why the check exists: the SDK's own answer is a ValueError naming no setting."""
    for value in ("garbage", "AccountName=archive;AccountKey", "EndpointSuffix=core.windows.net"):
        with pytest.raises(ValueError, match="Connection string"):
            BlobServiceClient.from_connection_string(value)


@pytest.mark.parametrize(
    "value", ["garbage", "ftp://archive.blob.core.windows.net", "https://", "https://user:pw@host", "https://h:port"]
)
def test_an_account_url_must_be_a_url_and_is_quoted_without_its_query(value: str) -> None:
    with pytest.raises(ConfigurationError, match=r"^ARCHIVE_STORAGE_ACCOUNT_URL must be a URL like https://"):
        check_account_url(value, "ARCHIVE_STORAGE_ACCOUNT_URL")
    with pytest.raises(ConfigurationError) as raised:
        check_account_url("garbage?sig=secret", "ARCHIVE_STORAGE_ACCOUNT_URL")
    assert "secret" not in str(raised.value)


def test_an_account_url_loses_its_trailing_slash() -> None:
    assert check_account_url(" https://a.blob.core.windows.net/ ", "X") == "https://a.blob.core.windows.net"
    assert (
        check_account_url("http://127.0.0.1:10000/devstoreaccount1", "X") == "http://127.0.0.1:10000/devstoreaccount1"
    )


@pytest.mark.parametrize("value", ["Func-Store", "ab", "a" * 25, "func.store"])
def test_an_account_name_is_one_the_service_allows(value: str) -> None:
    with pytest.raises(ConfigurationError, match=r"^AzureWebJobsStorage__accountName must be a storage account name"):
        check_account_name(value, "AzureWebJobsStorage__accountName")
