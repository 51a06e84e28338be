"""Every exception the package raises on purpose is in core/errors.py, in one hierarchy."""

from __future__ import annotations

import ast
import inspect

import recording_pipeline.core.errors as errors
from tests.support.stack import REPO


def test_every_exception_derives_from_pipeline_error() -> None:
    classes = [c for _n, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__]
    assert len(classes) > 15
    assert all(issubclass(c, errors.PipelineError) for c in classes)


def test_no_exception_class_is_defined_anywhere_else_in_the_package() -> None:
    for path in (REPO / "recording_pipeline").rglob("*.py"):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {ast.unparse(b) for b in node.bases}
                assert not any(b.endswith(("Error", "Exception")) for b in bases), f"{path}: {node.name}"


def test_the_package_raises_no_bare_builtin_errors() -> None:
    """ValueError / RuntimeError from our own code would escape every handler that sorts by class.

    Pydantic validators are the exception: pydantic turns their ValueError into its ValidationError, which the
    parsing code translates."""
    for path in (REPO / "recording_pipeline").rglob("*.py"):
        tree = ast.parse(path.read_text())
        validators = [
            f
            for f in ast.walk(tree)
            if isinstance(f, ast.FunctionDef) and any("validator" in ast.unparse(d) for d in f.decorator_list)
        ]
        exempt = {id(n) for v in validators for n in ast.walk(v)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and id(node) not in exempt:
                name = ast.unparse(node.exc.func)
                assert name not in ("ValueError", "RuntimeError", "Exception"), f"{path}: raise {name}"
