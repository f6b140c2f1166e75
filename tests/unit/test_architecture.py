"""The shape of the package, checked on every run (fast tier: no model).

import-linter checks the layers (faces above the engine, the engine above strategies,
strategies above scorers and backends, core types at the bottom) from pyproject.toml; these
tests add the rules it has no contract for: no module imports another module's private names,
no import cycles between any two modules, no module long enough to hold several ideas, in
``strategies`` only the code-execution sampler knows code execution's loop, pydantic's errors
are read in one module, and the engine refuses no request itself (planning does).
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


def test_code_and_docs_say_what_it_is_not_which_issue_it_came_from() -> None:
    root = SRC.parent
    assert (root / "README.md").is_file(), root
    files = [p for folder in ("src", "tests", "bench", "scripts") for p in sorted((root / folder).rglob("*.py"))]
    files += [*sorted((root / "scripts").glob("*.sh")), *sorted((root / "docs").rglob("*.md"))]
    files += [root / "README.md", root / "mkdocs.yml", root / "pyproject.toml"]
    tagged = [
        f"{path.relative_to(root)}:{n}"
        for path in files
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


TRANSLATOR = "llm_tts.validation_errors"
_ERROR_KEYS = {"loc", "msg", "ctx", "input"}  # the keys of one of pydantic's error dicts


def _reads_pydantic_errors(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("pydantic", "pydantic_core"):
            found += [f"imports {a.name}" for a in node.names if a.name == "ValidationError"]
        key = None
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            key = node.slice.value  # err["loc"]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
            first = node.args[0] if node.args else None
            key = first.value if isinstance(first, ast.Constant) else None  # err.get("loc")
        if key in _ERROR_KEYS:
            found.append(f"reads an error's {key!r}")
    return found


def test_pydantic_errors_are_translated_in_one_module() -> None:
    """One translator turns pydantic's errors into typed errors (llm_tts.validation_errors): no other
    module catches pydantic's ValidationError or reads an error's location or message itself."""
    found = [
        f"{_module_name(path)}: {what}"
        for path in sorted(SRC.rglob("*.py"))
        if _module_name(path) != TRANSLATOR
        for what in _reads_pydantic_errors(ast.parse(path.read_text(), str(path)))
    ]
    assert found == []


def test_the_engine_refuses_no_request_itself() -> None:
    """Every refusal of a request is a plan-time check in llm_tts.planning: the engine only lets a
    run's own errors through (a bare ``raise``)."""
    tree = ast.parse((SRC / "llm_tts" / "engine.py").read_text())
    raised = [ast.unparse(node.exc) for node in ast.walk(tree) if isinstance(node, ast.Raise) and node.exc is not None]
    assert raised == []
