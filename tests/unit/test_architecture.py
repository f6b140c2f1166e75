"""The shape of the package, checked on every run (fast tier: no model).

import-linter checks the layers (faces above the engine, the engine above strategies,
strategies above scorers and backends, core types at the bottom) from pyproject.toml; these
tests add the rules it has no contract for: no module imports another module's private names,
no import cycles between any two modules, no module long enough to hold several ideas, and in
``strategies`` only the code-execution sampler knows code execution's loop.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import grimp

SRC = Path(__file__).resolve().parents[2] / "src"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _private_imports() -> list[str]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("llm_tts"):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(f"{_module_name(path)}: from {node.module} import {alias.name}")
            if isinstance(node, (ast.ImportFrom, ast.Import)):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                for name in names:
                    if name.startswith("llm_tts") and any(
                        p.startswith("_") and not p.startswith("__") for p in name.split(".")
                    ):
                        found.append(f"{_module_name(path)}: imports private module {name}")
    return found


def test_no_module_imports_another_modules_private_names() -> None:
    assert _private_imports() == []


def test_no_import_cycles() -> None:
    graph = grimp.build_graph("llm_tts")
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if imported == module or module.startswith(imported + ".") or imported.startswith(module + "."):
                continue  # a package and its own submodules (re-exports) are not a cycle
            path = graph.find_shortest_chain(importer=imported, imported=module)
            if path is not None and not any(p != module and module.startswith(p + ".") for p in path):
                cycles.append(" -> ".join((module, *path)))
    assert cycles == []


def test_code_says_what_it_is_not_which_issue_it_came_from() -> None:
    tagged = [
        f"{path.relative_to(SRC)}:{n}"
        for path in sorted(SRC.rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\bissue \d+", line, re.IGNORECASE)
    ]
    assert tagged == []


MAX_MODULE_LINES = 560  # past this a module holds more than one idea: split it by idea


def test_no_module_outgrows_one_idea() -> None:
    long = {
        str(path.relative_to(SRC)): n
        for path in sorted(SRC.rglob("*.py"))
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_only_the_code_execution_sampler_knows_the_code_execution_loop() -> None:
    """A strategy or the context samples through ``ctx.sampler`` and never branches on code execution."""
    graph = grimp.build_graph("llm_tts")
    knowing = sorted(
        module
        for module in graph.find_children("llm_tts.strategies") | {"llm_tts.strategies"}
        if any(
            m == "llm_tts.tir" or m.startswith("llm_tts.tir.") for m in graph.find_modules_directly_imported_by(module)
        )
    )
    assert knowing == ["llm_tts.strategies.code_sampling"]
