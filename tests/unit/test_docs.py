"""What the README and the docs say of the tests is true: every test they name exists where they say."""

from __future__ import annotations

import re

import pytest

from tests.support.stack import REPO

DOCS = ["README.md", "SECURITY.md", "docs/PERFORMANCE.md", "docs/RUNBOOK.md", "docs/DEPLOY.md", "docs/ARCHITECTURE.md"]
ALL_TESTS = "\n".join(p.read_text() for p in (REPO / "tests").rglob("test_*.py"))


@pytest.mark.parametrize("doc", [d for d in DOCS if (REPO / d).exists()])
def test_every_test_a_document_names_exists(doc: str) -> None:
    text = (REPO / doc).read_text()
    for path, name in re.findall(r"(tests/[\w/]+\.py)(?:::(\w+))?", text):
        assert (REPO / path).exists(), f"{doc} names {path}"
        if name:
            assert re.search(rf"def {name}\b", (REPO / path).read_text()), f"{doc} names {path}::{name}"
    for name in re.findall(r"`(test_\w+)`", text):
        assert re.search(rf"def {name}\b", ALL_TESTS), f"{doc} names {name}"
