"""The benchmark scripts document themselves: a module docstring (what is measured, the command,
where the results go) and a help text for every command-line option."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


def test_scripts_found():
    assert len(SCRIPTS) >= 10


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_script_documents_its_options(script: Path):
    tree = ast.parse(script.read_text())
    doc = ast.get_docstring(tree) or ""
    assert "benchmarks/results" in doc or "results/" in doc or "json" in doc.lower(), \
        f"{script.name}: the docstring says where the results go"
    options = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
               and getattr(node.func, "attr", "") == "add_argument"]
    assert options, f"{script.name}: no command-line options found"
    undocumented = [ast.unparse(node.args[0]) for node in options
                    if node.args and not any(k.arg == "help" for k in node.keywords)]
    assert not undocumented, f"{script.name}: options without help: {undocumented}"
