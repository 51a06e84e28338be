"""edges/storage_errors: every Azure SDK error leaves the edge as a StorageError, with what the operator commands
tell apart (no answer, no credential, an answer), and never with a SAS token it carried."""

from __future__ import annotations

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
)

from recording_pipeline.core.errors import NO_CREDENTIAL, StorageError
from recording_pipeline.edges.storage_errors import create_if_missing, storage_errors


def test_no_credential_is_told_from_a_refusal_at_the_edge() -> None:
    with pytest.raises(StorageError) as raised, storage_errors("list *"):
        raise ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token.\nAttempted: …")
    assert raised.value.code == NO_CREDENTIAL and raised.value.status is None
    assert (
        str(raised.value)
        == "list *: no token for the storage account: DefaultAzureCredential failed to retrieve a token."
    )


def test_a_url_in_a_network_error_loses_its_query_a_sas_token_perhaps() -> None:
    with pytest.raises(StorageError) as raised, storage_errors("read a"):
        raise ServiceRequestTimeoutError(
            "Connection timeout to host https://a.blob.core.windows.net/c/a?sv=1&sig=SECRET"
        )
    assert "SECRET" not in str(raised.value) and "https://a.blob.core.windows.net/c/a" in str(raised.value)


async def _raising(exc: Exception) -> None:
    raise exc


async def test_creating_what_exists_or_what_the_role_may_not_create_is_no_error() -> None:
    await create_if_missing(_raising(ResourceExistsError("exists")), "container c")
    forbidden = HttpResponseError("403")
    forbidden.status_code = 403
    await create_if_missing(_raising(forbidden), "container c")


async def test_creating_against_an_account_that_does_not_answer_is_a_storage_error() -> None:
    """It once left as azure-core's own exception, a traceback for replay against an unreachable account."""
    with pytest.raises(StorageError, match=r"^create container c: ServiceRequestError: Cannot connect") as raised:
        await create_if_missing(_raising(ServiceRequestError("Cannot connect to host")), "container c")
    assert raised.value.status is None
