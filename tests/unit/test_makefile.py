"""``make clean`` removes everything the make targets create, and nothing of the user's own: run for real in a
scratch folder holding a copy of the Makefile and one of each thing .gitignore names."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.stack import REPO

# Ignored, but not made by a target: the user's settings, azd's environments, an Azurite started by hand, Core
# Tools' build output.
USERS_OWN = {"local.settings.json", ".azure", ".azurite", ".python_packages"}
# What a pattern of .gitignore stands for when the targets make it.
MADE_AS = {".venv-*": ".venv-infra", "*.pyc": "recording_pipeline/__pycache__/x.pyc", "*.egg-info": "x.egg-info"}


def ignored() -> list[str]:
    lines = (REPO / ".gitignore").read_text().splitlines()
    return [line.strip().rstrip("/") for line in lines if line.strip() and not line.startswith("#")]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_clean_removes_what_the_targets_make_and_keeps_the_user_s_own(tmp_path: Path) -> None:
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    made = [MADE_AS.get(name, name) for name in ignored() if name not in USERS_OWN]
    made += ["samples/subscriber/.mypy_cache", "tests/unit/__pycache__", ".demo/azurite", ".hypothesis/examples"]
    for path in [*made, *USERS_OWN]:
        target = tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.suffix in (".json", ".pyc"):
            target.write_text("{}")
        else:
            target.mkdir(exist_ok=True)
    (tmp_path / "recording_pipeline" / "kept.py").write_text("")
    subprocess.run(["make", "clean", "PYTHON=python3"], cwd=tmp_path, check=True, capture_output=True)
    assert [path for path in made if (tmp_path / path).exists()] == []
    assert all((tmp_path / path).exists() for path in USERS_OWN)
    assert (tmp_path / "recording_pipeline" / "kept.py").exists()
    assert {".venv-infra", ".hypothesis", ".demo", "node_modules", ".venv"} <= set(made)
