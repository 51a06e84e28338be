"""``pip install .`` gives the operator's console script, and the package holds only what runs in Azure."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from tests.support.stack import REPO


@pytest.mark.slow
def test_the_wheel_installs_a_working_console_script_and_nothing_but_the_package(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy: building leaves build/ and *.egg-info behind
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".*", "node_modules", "build", "*.egg-info"))
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(wheels), "."],
        cwd=source,
        check=True,
        capture_output=True,
    )
    [wheel] = wheels.glob("recording_pipeline-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"recording_pipeline", wheel.name.removesuffix("-py3-none-any.whl") + ".dist-info"}
    assert "recording_pipeline/core/lifecycle.py" in names
    assert not [n for n in names if n.startswith(("devtools/", "tests/", "bench/"))]

    fresh = tmp_path / "venv"
    venv.create(fresh, with_pip=True)
    python = fresh / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)], check=True, capture_output=True
    )
    # The dependencies are this environment's (no network in a test); the package and its script are the wheel's.
    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    for key in [k for k in env if k.startswith(("ACS_", "ARCHIVE_", "AzureWebJobs"))]:
        del env[key]
    script = fresh / "bin" / "recording-archive"
    helped = subprocess.run([script, "--help"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert helped.returncode == 0 and "status" in helped.stdout and "verify" in helped.stdout
    status = subprocess.run([script, "status"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert status.returncode == 2 and "configuration error" in status.stderr
    where = subprocess.run(
        [python, "-c", "import recording_pipeline; print(recording_pipeline.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert where.stdout.startswith(str(fresh)), "the script must run the installed package, not the checkout"
