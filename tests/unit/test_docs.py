"""What the README and the docs say is true: every test they name exists where they say, and what they say of the
code (the data path, the app layer's imports, the manifest's states, what the worker decides from) matches it."""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import pytest

from tests.support.stack import REPO

DOCS = [
    "README.md",
    "SECURITY.md",
    "docs/PERFORMANCE.md",
    "docs/RUNBOOK.md",
    "docs/DEPLOY.md",
    "docs/ARCHITECTURE.md",
    "docs/FIXITY.md",
]
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


# --- what the documents say of the code ------------------------------------------------------------

PRODUCTION = [*sorted((REPO / "recording_pipeline").rglob("*.py")), REPO / "function_app.py"]
TREES = {path: ast.parse(path.read_text()) for path in PRODUCTION}
ARCHITECTURE = (REPO / "docs" / "ARCHITECTURE.md").read_text()


def _data_path() -> str:
    section = ARCHITECTURE.split("## The data path", 1)[1]
    return section.split("```", 2)[1]


def _module_path(name: str) -> Path:
    if name in ("function_app", "functions_adapter", "runtime"):
        return REPO / (f"{name}.py" if name == "function_app" else f"recording_pipeline/{name}.py")
    return REPO / "recording_pipeline" / f"{name}.py"


def _defined_in(tree: ast.Module) -> set[str]:
    """The functions and classes a module defines (at any depth: function_app declares some under an ``if``), and
    its module-level assignments."""
    names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)}
    for node in tree.body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def _used(name: str) -> bool:
    """Whether production code reads ``name`` (a call, a subscript, a reference); importing it, or naming it in
    ``__all__``, is not a use."""
    for tree in TREES.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id == name and isinstance(node.ctx, ast.Load):
                return True
            if isinstance(node, ast.Attribute) and node.attr == name and isinstance(node.ctx, ast.Load):
                return True
    return False


def test_every_name_on_the_data_path_is_one_the_running_app_uses() -> None:
    """The data path is what a delivery and a queue message go through, not what the tests call."""
    named = re.findall(r"\b((?:app|core|edges)/\w+|function_app|functions_adapter)(?:\.(\w+))?", _data_path())
    assert ("app/worker", "handle_chunk_message") in named and ("app/after_copy_steps", "delete_source") in named
    for module, attribute in named:
        path = _module_path(module)
        assert path.exists(), f"the data path names {module}, which is not a module"
        if not attribute:
            continue
        defined = _defined_in(TREES[path])
        assert attribute in defined, f"the data path names {module}.{attribute}, which {module} does not define"
        if module != "function_app":  # its functions are the host's entry points
            assert _used(attribute), f"{module}.{attribute} is on the data path, but nothing calls it"


def test_the_architecture_states_the_app_layer_s_exception_to_core_ports() -> None:
    from tests.unit.test_imports import APP, SOURCES, TELEMETRY, imports_of, resolve

    users = [m for m in APP for i, n in imports_of(SOURCES[m], m) if resolve(i, n, SOURCES) == TELEMETRY]
    [app_row] = [line for line in ARCHITECTURE.splitlines() if line.startswith("| `recording_pipeline/app/` |")]
    if users:
        assert "`edges.telemetry`" in app_row and "tests/unit/test_imports.py" in app_row, (
            f"{sorted(set(users))} import edges.telemetry: the architecture must state the exception"
        )


def test_the_readme_names_the_manifest_states_the_model_has() -> None:
    from recording_pipeline.core.state import ChunkState, RecordingState

    [row] = [line for line in (REPO / "README.md").read_text().splitlines() if "manifest.json` |" in line]
    recording, chunk = re.search(r"`state` is (.*?), each chunk's (.*?);", row).groups()  # type: ignore[union-attr]
    assert set(re.findall(r"`([\w-]+)`", recording)) == {s.value for s in RecordingState}
    assert set(re.findall(r"`([\w-]+)`", chunk)) == {s.value for s in ChunkState}


def test_core_errors_says_what_the_attempt_s_decision_depends_on() -> None:
    """Not the class alone: the worker maps a few classes to a Failure, and the policy weighs it with the rest."""
    import inspect

    import recording_pipeline.core.errors as errors
    from recording_pipeline.core.attempts import AttemptPolicy

    said = errors.__doc__ or ""
    assert "class alone" not in said
    for parameter in list(inspect.signature(AttemptPolicy.decide).parameters)[1:]:
        assert f"``{parameter}``" in said, f"core/errors.py does not say the decision weighs {parameter}"
    worker = TREES[REPO / "recording_pipeline" / "app" / "worker.py"]
    mapped = {
        ast.unparse(node.args[1])
        for node in ast.walk(worker)
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "isinstance" and ast.unparse(node.args[0]) == "exc"
    }
    assert mapped == {"InvalidEventError", "AttemptTimeoutError"}
    assert all(name in said for name in mapped)


# --- what the documents say of the deployment and the state --------------------------------------

DEPLOY = (REPO / "docs" / "DEPLOY.md").read_text()
NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8}


def _functions_declared() -> set[str]:
    """The functions function_app.py declares: those decorated with ``@app.<trigger>(...)``."""
    tree = TREES[REPO / "function_app.py"]
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef)
        and any(ast.unparse(d).startswith("app.") for d in node.decorator_list)
    }


def test_deploy_names_every_function_the_app_declares() -> None:
    [row] = [line for line in DEPLOY.splitlines() if line.startswith("| Flex Consumption plan")]
    named = set(re.findall(r"`(\w+)`", row))
    assert _functions_declared() <= named, f"DEPLOY's function list lacks {_functions_declared() - named}"
    assert {"recording_events", "archive_recording_chunk", "poison_depth", "fixity_audit"} <= _functions_declared()


def test_deploy_counts_the_alerts_infra_deploys() -> None:
    bicep = (REPO / "infra" / "modules" / "alerts.bicep").read_text()
    logs = len(re.findall(r"^resource \w+ 'Microsoft.Insights/scheduledQueryRules@", bicep, re.MULTILINE))
    metrics = len(re.findall(r"^resource \w+ 'Microsoft.Insights/metricAlerts@", bicep, re.MULTILINE))
    [stated] = re.findall(r"\| Action group \+ (\d+) alerts \|", DEPLOY)
    assert int(stated) == logs + metrics
    cost = re.search(r"(\w+) 5-minute log alerts? \(.*?\),\s+(\w+) metric alerts?", DEPLOY, re.DOTALL)
    assert cost is not None and (NUMBERS[cost.group(1)], NUMBERS[cost.group(2)]) == (logs, metrics)
    alerts = DEPLOY.split("## Alerts", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in alerts.splitlines() if line.startswith("| **")]
    assert len(rows) == logs + metrics


def test_no_document_puts_a_state_container_prefix_in_the_archive_or_the_reverse() -> None:
    from recording_pipeline.core import naming

    state = [naming.QUARANTINE_PREFIX, naming.HOLDS_PREFIX, naming.OUTBOX_PREFIX, naming.FIXITY_PREFIX, "_locks/"]
    archive = [naming.LOST_PREFIX, "_rejected/", "_index/", "_check/", naming.ACCESS_PREFIX]
    for doc in [d for d in DOCS if (REPO / d).exists()]:
        text = " ".join((REPO / doc).read_text().split())
        for prefix in state:
            assert not re.search(rf"archive(?: container)?'s `{prefix}", text), f"{doc} puts {prefix} in the archive"
        for prefix in archive:
            assert not re.search(rf"state container's `{prefix}", text), f"{doc} puts {prefix} in the state"


def test_the_runbook_names_only_fields_that_status_json_has() -> None:
    """A field said to come from ``status … --json`` is one of its keys (the runbook once named ``lastError``)."""
    from recording_pipeline.cli.status import RecordingStatus

    keys = set(RecordingStatus.__dataclass_fields__)
    camel = {re.sub(r"_(\w)", lambda m: m.group(1).upper(), k) for k in keys}
    for doc in [d for d in DOCS if (REPO / d).exists()]:
        text = " ".join((REPO / doc).read_text().split())
        for claim in re.findall(r"`status[^`]*--json`(?: / `status[^`]*--json`)? \(`(\w+)`\)", text):
            assert claim in camel, f"{doc} says status --json has {claim}"


# --- what the documents say of the command line ---------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(found[0].choices) if found else {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    named = {o for a in parser._actions for o in a.option_strings if o.startswith("--")}
    return named - {"--help", "--verbose"}


def test_the_readme_lists_every_command_with_its_actions_and_options() -> None:
    """Operating it has a line for each command the parser declares (check: its own section), naming each of its
    actions and each option; a command added without its line, or an option without a word, fails here."""
    from recording_pipeline.cli.arguments import build_parser

    readme = (REPO / "README.md").read_text()
    operating = readme.split("\n## Operating it", 1)[1].split("\n## ", 1)[0]
    lines = {}
    for item in re.split(r"\n(?=- )", operating):
        if found := re.match(r"- `recording-archive ([\w-]+)", item):
            lines[found.group(1)] = " ".join(item.split())
    lines["check"] = " ".join(
        readme.split("## Proving a deployment: `recording-archive check`", 1)[1].split("\n## ")[0].split()
    )
    commands = _subcommands(build_parser())
    assert {"export", "reindex", "fixity", "hold", "replay"} <= set(commands)
    assert set(lines) == set(commands), f"README's Operating it lists {sorted(lines)}, the CLI has {sorted(commands)}"
    for name, parser in commands.items():
        said = lines[name]
        actions = _subcommands(parser)
        for action in actions:
            assert re.search(rf"`(recording-archive )?{name} {action}\b", said), f"README does not name {name} {action}"
        for option in _options(parser).union(*(_options(p) for p in actions.values())):
            assert f"{option}" in said, f"README's line for {name} does not name {option}"


def test_the_architecture_and_the_repository_table_name_every_command() -> None:
    from recording_pipeline.cli.arguments import build_parser

    commands = set(_subcommands(build_parser()))
    [row] = [line for line in ARCHITECTURE.splitlines() if line.startswith("| `recording_pipeline/cli/` |")]
    modules = {p.stem for p in (REPO / "recording_pipeline" / "cli").glob("*.py")}
    named = set(re.findall(r"`(\w+)`", row))
    for name in named:
        assert name in modules, f"ARCHITECTURE's cli row names {name}, not a module of cli/"
    for command in commands:  # each command is its own module, hold's and rebuild-state's by another name
        assert {"hold": "holds", "rebuild-state": "rebuild"}.get(command, command) in named, command
    [table] = [
        line
        for line in (REPO / "README.md").read_text().splitlines()
        if line.startswith("| `recording_pipeline/cli/` |")
    ]
    assert set(re.findall(r"[\w-]+", table.split("`recording-archive`:", 1)[1])) == commands
