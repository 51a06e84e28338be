"""``make demo KEEP=1``: the demo's stack stays up until Ctrl-C, the CLI works against it with the settings it
writes, the blob URLs it prints open without credentials, and Ctrl-C ends it with its verdict; each run starts from
an empty data folder, so old runs do not pile up."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp

from devtools.demo import fresh_run_dir
from tests.support.stack import REPO


async def test_a_kept_demo_serves_the_cli_and_a_browser_until_ctrl_c(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "devtools.demo",
        "--keep",
        "--size-mib",
        "2",
        "--workdir",
        str(tmp_path),
        cwd=REPO,
        env=os.environ.copy(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        while not any(line.startswith("demo:   source ") for line in lines):
            line = (await asyncio.wait_for(process.stdout.readline(), 240)).decode()
            assert line, "".join(lines)
            lines.append(line)
        env_file = tmp_path / "env.sh"
        assert f"demo:   source {env_file}\n" in lines
        env = dict(re.findall(r"^export (\w+)=(.*)$", env_file.read_text(), re.MULTILINE))
        env = {name: value.strip("'") for name, value in env.items()}
        status = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "recording_pipeline",
            "status",
            "--json",
            env={"PATH": os.environ["PATH"], "XDG_STATE_HOME": str(tmp_path), **env},
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await status.communicate()
        assert status.returncode == 0
        [recording] = json.loads(out)
        assert (recording["state"], recording["chunksArchived"]) == ("complete", 3)
        media = [line for line in lines if line.startswith("demo: ok ")]
        assert len(media) == 3
        async with aiohttp.ClientSession() as session:
            for line in media:
                url, printed = re.search(r"demo: ok\s+(\S+) \(.*sha256 (\w+)…", line).groups()  # type: ignore[union-attr]
                async with session.get(url) as response:  # a browser's GET: no credentials but the URL's own
                    assert response.status == 200
                    assert hashlib.sha256(await response.read()).hexdigest().startswith(printed)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(process.communicate(), 120)
    text = "".join(lines) + rest.decode()
    assert process.returncode == 0, text
    assert "demo: stopping the stack" in text and text.rstrip().endswith("demo: archive verified")


def test_each_run_starts_from_an_empty_data_folder(tmp_path: Path) -> None:
    for old in ("azurite-1764900000", "azurite-1764990000", "azurite"):
        (tmp_path / old / "__blobstorage__").mkdir(parents=True)
    (tmp_path / "env.sh").write_text("")
    location = fresh_run_dir(tmp_path)
    assert location == tmp_path / "azurite" and not location.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["env.sh"]
