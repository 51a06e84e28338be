"""Runtime: the clients built once per process, and nothing left open when building them fails."""

from __future__ import annotations

from typing import Any, ClassVar

import aiohttp
import pytest

import recording_pipeline.runtime as runtime_module
from recording_pipeline.core.settings import Settings
from recording_pipeline.runtime import Runtime

ENTRA = {
    "ACS_ENDPOINT": "https://acs.communication.azure.com",
    "ARCHIVE_STORAGE_ACCOUNT_URL": "https://archive.blob.core.windows.net",
    "AzureWebJobsStorage__accountName": "funcstorage",
}


class _Credential:
    made: ClassVar[list[_Credential]] = []

    def __init__(self) -> None:
        self.closed = False
        _Credential.made.append(self)

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        raise AssertionError("no token is needed to build the clients")

    async def close(self) -> None:
        self.closed = True


_sessions: list[aiohttp.ClientSession] = []
_real_session = aiohttp.ClientSession


def _session(*args: Any, **kwargs: Any) -> aiohttp.ClientSession:
    made = _real_session(*args, **kwargs)
    _sessions.append(made)
    return made


async def test_a_start_that_fails_closes_the_session_and_the_credential_it_opened(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import azure.identity.aio

    monkeypatch.setattr(azure.identity.aio, "DefaultAzureCredential", _Credential)
    monkeypatch.setattr(aiohttp, "ClientSession", _session)

    def no_queue(*args: Any) -> Any:
        raise ValueError("the queue service cannot be reached this way")

    monkeypatch.setattr(runtime_module, "open_queue", no_queue)
    settings = Settings.from_env(ENTRA)
    for _start in range(3):  # as when every invocation tries again
        with pytest.raises(ValueError, match="queue service"):
            await Runtime.build(settings)
    assert len(_sessions) == len(_Credential.made) == 3
    assert all(s.closed for s in _sessions), "an aiohttp session leaked"
    assert all(c.closed for c in _Credential.made), "a credential leaked"


async def test_a_runtime_that_started_closes_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    import azure.identity.aio

    monkeypatch.setattr(azure.identity.aio, "DefaultAzureCredential", _Credential)
    _Credential.made.clear()
    runtime = await Runtime.build(Settings.from_env(ENTRA))
    await runtime.close()
    assert runtime.session.closed and _Credential.made[0].closed
