"""The rules of the layout that import-linter cannot check, and the picture of it in the docs."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

from tests.helpers import REPO

# The calls that record what came of an attempt, and the one module that may make them (the ledger
# defines them; the usage benchmark times `finish` itself, outside any attempt).
OUTCOME_CALLS = {"finish", "requeue"}
MAY_RECORD_OUTCOMES = {"pipeline/attempt.py", "pipeline/measure/usage_bench.py"}


def outcome_calls(path: Path) -> list[int]:
    """Lines of `path` that call `<...>.invocations.finish(...)` or `.requeue(...)`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in OUTCOME_CALLS
            and isinstance(node.func.value, ast.Attribute)
            and node.func.value.attr == "invocations"
        ):
            found.append(node.lineno)
    return found


def test_only_the_attempt_module_records_an_attempts_outcome() -> None:
    offenders = {
        str(path.relative_to(REPO)): lines
        for path in sorted((REPO / "pipeline").rglob("*.py"))
        if not str(path.relative_to(REPO)).startswith("pipeline/ledger/")
        and str(path.relative_to(REPO)) not in MAY_RECORD_OUTCOMES
        and (lines := outcome_calls(path))
    }
    assert offenders == {}, f"an attempt's outcome is recorded outside pipeline/attempt.py: {offenders}"
    assert outcome_calls(REPO / "pipeline" / "attempt.py"), "the check would find the calls it looks for"


def test_the_architecture_page_lists_the_layers_lint_imports_checks() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    [layers] = [c["layers"] for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
    page = (REPO / "docs" / "architecture.md").read_text()
    block = page.split("<!-- layers -->", 1)[1].split("<!-- /layers -->", 1)[0]
    documented = re.findall(r"^\d+\. `([^`]+)`$", block, flags=re.MULTILINE)
    assert documented == layers, "docs/architecture.md's layer list differs from pyproject.toml's"
