"""The operator commands as a new user meets them: a setting missing or malformed, a storage account that cannot be
reached or refuses, an ACS endpoint that is dead. Each is one line on stderr naming the setting or the endpoint and
the fix, exit status 2 (check: its FAIL lines), never a traceback, and within seconds; the retries' log lines go to
the log file, and to stderr only with --verbose."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
from pathlib import Path

import pytest

from recording_pipeline.cli import main
from recording_pipeline.cli.logs import log_path
from tests.support.dead_ends import azurite_at, blackhole, closed_port
from tests.support.stack import REPO, Stack

COMMANDS = [
    ["status"],
    ["verify"],
    ["participant", "8:acs:alice"],
    ["hold", "list"],
    ["hold", "place", "CASE-1", "aaaa-1"],
    ["rebuild-state", "--dry-run"],
    ["reindex"],
    ["export", "--case", "CASE-1", "--to", "never-written"],
    ["fixity", "status"],
    ["replay", "--poison"],
]


async def run(*args: str, env: dict[str, str], timeout: float = 120) -> tuple[int, str, str, float]:
    """``python -m recording_pipeline ARGS`` as a user runs it, with only ``env``: (status, stdout, stderr, seconds)."""
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "recording_pipeline",
        *args,
        env={"PATH": os.environ["PATH"], "XDG_STATE_HOME": os.environ["XDG_STATE_HOME"], **env},
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode(), time.monotonic() - started


def one_line(err: str) -> str:
    assert "Traceback" not in err and err.endswith("\n") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_malformed_or_missing_archive_setting_is_one_line_naming_it(
    command: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith(("ARCHIVE_", "AzureWebJobsStorage", "ACS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ARCHIVE_STORAGE_CONNECTION_STRING", "garbage")
    monkeypatch.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    assert main(command) == 2
    err = one_line(capsys.readouterr().err)
    assert err.startswith(f"{command[0]}: configuration error: ARCHIVE_STORAGE_CONNECTION_STRING is not a connection")
    assert "Access keys" in err  # the fix
    monkeypatch.delenv("ARCHIVE_STORAGE_CONNECTION_STRING")
    assert main(command) == 2
    assert "set ARCHIVE_STORAGE_CONNECTION_STRING or ARCHIVE_STORAGE_ACCOUNT_URL" in one_line(capsys.readouterr().err)


async def test_the_same_from_a_shell_exits_2_without_a_traceback() -> None:
    status, out, err, _ = await run("status", env={"ARCHIVE_STORAGE_CONNECTION_STRING": "garbage"})
    assert status == 2 and out == ""
    assert "ARCHIVE_STORAGE_CONNECTION_STRING is not a connection string" in one_line(err)


async def test_check_lists_every_missing_setting_at_once_and_every_malformed_one() -> None:
    status, out, err, _ = await run("check", "--json", env={})
    assert status == 1 and "Traceback" not in err
    lines = json.loads(out)
    failed = [line["reason"] for line in lines if line["verdict"] == "FAIL"]
    assert failed == [
        "set ACS_CONNECTION_STRING (access key) or ACS_ENDPOINT (Entra ID)",
        "set ARCHIVE_STORAGE_CONNECTION_STRING or ARCHIVE_STORAGE_ACCOUNT_URL for the archive",
        "set AzureWebJobsStorage (or AzureWebJobsStorage__accountName) for the chunk queue",
    ]
    status, out, err, _ = await run(
        "check",
        "--json",
        env={
            "ARCHIVE_STORAGE_CONNECTION_STRING": "garbage",
            "AzureWebJobsStorage": "AccountName=funcstore;AccountKey=not-base64!",
            "ACS_ENDPOINT": "acs.communication.azure.com",
            "TRANSFER_CONCURRENCY": "many",
        },
    )
    assert status == 1 and "Traceback" not in err  # it once crashed building the clients
    failed = [line["reason"].split(" ")[0].rstrip(":") for line in json.loads(out) if line["verdict"] == "FAIL"]
    assert failed == [
        "ACS_ENDPOINT",
        "ARCHIVE_STORAGE_CONNECTION_STRING",
        "AzureWebJobsStorage",
        "TRANSFER_CONCURRENCY",
    ]


async def test_an_account_that_takes_no_connection_is_named_within_about_ten_seconds() -> None:
    """The SDK's own limits (20 s to connect, three retries 15 s + 3^n apart) kept status silent for 85 s."""
    with blackhole() as port:
        status, out, err, seconds = await run("status", env={"ARCHIVE_STORAGE_CONNECTION_STRING": azurite_at(port)})
    assert status == 2 and out == ""
    line = one_line(err)
    assert line.startswith(f"status: no answer from http://127.0.0.1:{port}/devstoreaccount1 (")
    assert "check ARCHIVE_STORAGE_CONNECTION_STRING and that this machine can reach the account" in line
    assert f"details in {Path(os.environ['XDG_STATE_HOME']) / 'recording-archive' / 'cli.log'}" in line
    assert seconds < 20, seconds  # two connects of 4 s and a backoff of up to 2 s, and the interpreter's start


async def test_a_refused_connection_is_named_at_once_and_its_retry_is_in_the_log_not_on_stderr() -> None:
    port = closed_port()
    env = {"ARCHIVE_STORAGE_CONNECTION_STRING": azurite_at(port)}
    status, _, err, seconds = await run("verify", env=env)
    assert status == 2 and f"no answer from http://127.0.0.1:{port}/devstoreaccount1" in one_line(err)
    assert seconds < 15, seconds
    status, _, err, _ = await run("verify", "--verbose", env=env)
    assert status == 2 and err.count("\n") == 2 and '"level": "error"' in err  # --verbose: the log line too
    [logged] = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert logged["account"] == f"http://127.0.0.1:{port}/devstoreaccount1" and "Cannot connect" in logged["message"]


async def test_replaying_files_into_an_account_that_takes_no_connection_is_one_line_within_seconds(
    stack: Stack, tmp_path: Path
) -> None:
    saved = tmp_path / "deadletter.json"
    saved.write_text("[]")
    with blackhole() as port:
        env = {
            **stack.env,
            "ARCHIVE_STORAGE_CONNECTION_STRING": azurite_at(port),
            "AzureWebJobsStorage": azurite_at(port),
        }
        status, _, err, seconds = await run("replay", str(saved), env=env)
    assert status == 2 and "replay: the storage could not be used: " in one_line(err), err
    assert f"http://127.0.0.1:{port}" in err and seconds < 20, seconds


async def test_an_account_that_refuses_the_key_says_which_role_or_key(stack: Stack) -> None:
    key = stack.azurite.connection_string.split("AccountKey=", 1)[1].split(";", 1)[0]
    wrong = stack.azurite.connection_string.replace(key, base64.b64encode(b"not the account's key").decode())
    status, _, err, _ = await run("status", env={"ARCHIVE_STORAGE_CONNECTION_STRING": wrong})
    assert status == 2
    line = one_line(err)
    assert "refused the request (" in line and "403" in line
    assert "Storage Blob Data Reader" in line and "check the key in ARCHIVE_STORAGE_CONNECTION_STRING" in line


async def test_check_against_a_dead_acs_endpoint_fails_its_line_within_seconds(stack: Stack) -> None:
    """It once took 69 s and printed 7 JSON retry lines on stderr."""
    runtime = await stack.runtime()  # the containers and queues exist, as after a deploy
    await runtime.close()
    key = stack.simulator.connection_string.split("accesskey=", 1)[1]
    with blackhole() as port:
        endpoint = f"http://127.0.0.1:{port}"
        env = {**stack.env, "ACS_CONNECTION_STRING": f"endpoint={endpoint};accesskey={key}"}
        status, out, err, seconds = await run("check", "--json", env=env)
    assert status == 1 and err == ""
    lines = {line["name"]: line for line in json.loads(out)}
    acs = lines["ACS accepts a signed request"]
    assert (acs["verdict"], acs["reason"]) == ("FAIL", f"no answer from {endpoint} within 10 s")
    assert "reach it" in acs["fix"]
    assert lines["state container reachable"]["verdict"] == "ok"  # the other lines still ran
    assert seconds < 30, seconds
    refused = f"http://127.0.0.1:{closed_port()}"
    env["ACS_CONNECTION_STRING"] = f"endpoint={refused};accesskey={key}"
    status, out, err, seconds = await run("check", env=env)
    assert status == 1 and err == "" and seconds < 30  # its retry is logged to the file only
    assert "FAIL                ACS accepts a signed request: ACS answered:" in out
    status, out, err, _ = await run("check", "--verbose", env=env)
    assert "retrying in" in err


def test_the_log_file_is_where_the_one_line_says() -> None:
    assert log_path() == Path(os.environ["XDG_STATE_HOME"]) / "recording-archive" / "cli.log"
