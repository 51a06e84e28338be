"""Azurite on free loopback ports, for the demo, the tests and the benchmark.

Not used in Azure. Azurite comes from the repo's package.json (``npm ci``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

# Azurite's published development account (a well-known, public test credential).
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
REPO = Path(__file__).resolve().parent.parent


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout:.0f}s")


def wait_until_ready(base_url: str, timeout: float = 90.0) -> dict[str, object]:
    """Poll the host's readiness probe (``/runtime/health/ready``) until it answers 200; its last answer."""
    import json
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    last = "nothing answered"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base_url}/runtime/health/ready", timeout=2) as response:  # noqa: S310
                answer: dict[str, object] = json.loads(response.read())
                return answer
        except urllib.error.HTTPError as exc:  # 503 while it starts, or with the reason it cannot
            last = exc.read().decode(errors="replace")
        except (OSError, ValueError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.2)
    raise TimeoutError(f"{base_url} was not ready after {timeout:.0f}s: {last}")


def azurite_binary() -> str:
    local = REPO / "node_modules" / ".bin" / "azurite"
    if local.exists():
        return str(local)
    found = shutil.which("azurite")
    if found:
        return found
    raise FileNotFoundError("azurite not found: run `npm ci` in the repository (make setup does)")


@dataclass
class Azurite:
    """One Azurite process (blob + queue); ``restart()`` keeps its data."""

    host: str = "127.0.0.1"
    blob_port: int = 0
    queue_port: int = 0
    location: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="azurite-")))
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    access_log: bool = False  # a line per request in log_path, for the write-once guard

    def start(self) -> Azurite:
        self.blob_port = self.blob_port or free_port(self.host)
        self.queue_port = self.queue_port or free_port(self.host)
        self.location.mkdir(parents=True, exist_ok=True)
        self.log_path = self.location / "azurite.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        self.process = subprocess.Popen(
            [
                azurite_binary(),
                *([] if self.access_log else ["--silent"]),
                "--skipApiVersionCheck",
                "--loose",
                # Azurite reports usage to Application Insights by default: a lookup of Microsoft's hosts and calls
                # to the cloud metadata address. Nothing here leaves loopback.
                "--disableTelemetry",
                "--location",
                str(self.location),
                "--blobHost",
                self.host,
                "--blobPort",
                str(self.blob_port),
                "--queueHost",
                self.host,
                "--queuePort",
                str(self.queue_port),
                "--tableHost",
                self.host,
                "--tablePort",
                str(free_port(self.host)),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_for_port(self.host, self.blob_port)
        wait_for_port(self.host, self.queue_port)
        return self

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds (Azurite waits for its clients' idle connections)."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=grace)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"BlobEndpoint=http://{self.host}:{self.blob_port}/{DEV_ACCOUNT};"
            f"QueueEndpoint=http://{self.host}:{self.queue_port}/{DEV_ACCOUNT};"
        )


class ServeProcess:
    """``python -m devtools.local_host`` (the local Functions host) as a real subprocess on a free port."""

    def __init__(self, env: dict[str, str], log_path: Path, app_root: Path = REPO) -> None:
        """``app_root``: another checkout of this app to run (the benchmark's before-and-after), whose devtools/
        speak the same worker protocol (a checkout of this version or later)."""
        self.port = free_port()
        self.env = {**os.environ, **env}
        if app_root != REPO:
            self.env["PYTHONPATH"] = str(app_root)  # before the editable install of this checkout
        self.app_root = app_root
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/recording-events"

    def start(self) -> ServeProcess:
        app_root = self.app_root
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "devtools.local_host", "--port", str(self.port), "--app-root", str(app_root)],
                env=self.env,
                cwd=self.app_root,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its language worker is in the same group: a kill takes both
            )
        wait_until_ready(f"http://127.0.0.1:{self.port}", timeout=90)
        return self

    def kill(self) -> None:
        """SIGKILL to the host and its worker: no clean-up, as when an instance is recycled mid-transfer."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # the host alone: it lets running invocations end, then stops its worker
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()

    def _signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")
