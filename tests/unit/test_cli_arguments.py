"""The command line as a user reads it: every subcommand's --help describes it and names the settings it reads;
the hold and fixity actions each have their own; what becomes of a storage error is one line with the account and
the fix (cli/storage.storage_trouble), whatever kind it is; the sizes --bytes takes."""

from __future__ import annotations

import pytest

from recording_pipeline.cli.arguments import parse_args
from recording_pipeline.cli.storage import account_url, storage_trouble
from recording_pipeline.core.errors import NO_CREDENTIAL, StorageError
from recording_pipeline.core.settings import StorageTarget

COMMANDS = {
    ("check",): "every app setting",
    ("replay",): "--poison: ARCHIVE_STORAGE_CONNECTION_STRING",
    ("status",): "AzureWebJobsStorage",
    ("verify",): "ARCHIVE_STORAGE_CONNECTION_STRING",
    ("participant",): "ARCHIVE_STATE_CONTAINER",
    ("rebuild-state",): "writes the state container",
    ("reindex",): "creates entries in the archive's _index/",
    ("export",): "writes the access record and its index entries in the archive",
    ("hold",): "ARCHIVE_CONTAINER",
    ("hold", "place"): "ARCHIVE_STORAGE_ACCOUNT_URL",
    ("hold", "clear"): "ARCHIVE_STORAGE_ACCOUNT_URL",
    ("hold", "list"): "ARCHIVE_STORAGE_ACCOUNT_URL",
    ("fixity",): "FIXITY_BYTES_PER_DAY",
    ("fixity", "run"): "FIXITY_BYTES_PER_DAY (writes the state container)",
    ("fixity", "status"): "FIXITY_BYTES_PER_DAY",
}


def help_of(command: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as done:
        parse_args([*command, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", list(COMMANDS), ids=" ".join)
def test_every_command_describes_itself_and_names_the_settings_it_reads(
    command: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    text = help_of(command, capsys)
    usage, description = text.split("\n\n")[:2]
    assert usage.startswith(f"usage: recording-archive {' '.join(command)}")
    assert len(description) > 60 and not description.startswith(("positional", "options"))
    reads = " ".join(text.split("reads: ", 1)[1].split())
    assert COMMANDS[command] in reads
    assert "exit status: 0 done" in text


def test_the_hold_actions_each_have_their_own_help(capsys: pytest.CaptureFixture[str]) -> None:
    texts = {action: help_of(("hold", action), capsys) for action in ("place", "clear", "list")}
    assert len(set(texts.values())) == 3
    assert "CASE RECORDING [RECORDING ...]" in texts["place"] and "--json" in texts["list"]
    assert "RECORDING" not in texts["clear"].split("\n\n")[0]


def test_verbose_is_taken_by_every_command() -> None:
    for command in (
        ["status"],
        ["verify"],
        ["hold", "list"],
        ["check"],
        ["rebuild-state"],
        ["fixity", "status"],
        ["reindex"],
        ["export", "--case", "CASE-1", "--to", "bag"],
    ):
        assert parse_args([*command, "--verbose"]).verbose is True
        assert parse_args(command).verbose is False


def test_hold_list_takes_a_case_and_export_needs_one_target(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_args(["hold", "list", "CASE-9"]).case == "CASE-9"
    assert parse_args(["hold", "list"]).case == ""
    for twice in (["--to", "bag", "--to-container", "c/f"], []):
        with pytest.raises(SystemExit) as done:
            parse_args(["export", "--case", "CASE-1", *twice])
        assert done.value.code == 2
    assert "--to" in capsys.readouterr().err


TARGET = StorageTarget(account_url="https://archive.blob.core.windows.net", setting="ARCHIVE_STORAGE_ACCOUNT_URL")
ACCOUNT = "https://archive.blob.core.windows.net"


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (StorageError("list *: ServiceRequestError: Cannot connect to host"), "no answer from"),
        (StorageError("list *: no token for the storage account: …", None, NO_CREDENTIAL), "run az login"),
        (StorageError("list *: 403 AuthorizationPermissionMismatch", 403, "Auth"), "Storage Blob Data Reader"),
        (StorageError("list *: 503 ServerBusy", 503, "ServerBusy"), "try again"),
    ],
)
def test_each_kind_of_storage_trouble_is_one_line_with_the_account_and_a_fix(error: StorageError, says: str) -> None:
    line = storage_trouble(error, ACCOUNT, TARGET)
    assert ACCOUNT in line and says in line and "\n" not in line and str(error) in line


def test_the_account_is_the_container_url_without_the_container_or_a_query() -> None:
    assert account_url("https://a.blob.core.windows.net/recordings?sv=1&sig=x") == "https://a.blob.core.windows.net"
    assert account_url("http://127.0.0.1:10000/devstoreaccount1/rec") == "http://127.0.0.1:10000/devstoreaccount1"


@pytest.mark.parametrize(("text", "size"), [("1", 1), ("500MiB", 500 * 2**20), ("1.5 GiB", 3 * 2**29), ("2tib", 2**41)])
def test_a_size_is_bytes_or_a_binary_unit(text: str, size: int) -> None:
    from recording_pipeline.cli.fixity import parse_size

    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "0", "-1", "5GB", "lots", "1e9"])
def test_a_size_that_is_not_one_is_refused_by_the_command_line(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        parse_args(["fixity", "run", "--bytes", text])
    assert done.value.code == 2 and "not a size" in capsys.readouterr().err
