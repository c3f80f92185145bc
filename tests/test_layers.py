"""The layers import one way: core <- envs <- agents <- app, with no import loop (docs/architecture.md).

Read from the source (the AST), so an import inside a function counts as much as one at the top. The
package facade ``devlearn/__init__.py`` (``import devlearn``) and ``devlearn/__main__.py`` are the entry
points: they sit above everything and may reach down to any layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# source folder -> the package it installs as (pyproject.toml's package-dir)
PACKAGES = {"devlearn": "devlearn", "envs": "devlearn.envs", "agents": "devlearn.agents", "configs": "devlearn.configs"}
LAYERS = ("core", "envs", "agents", "app", "entry")
APP = ("devlearn.app", "devlearn.probes")
ENTRY = ("devlearn", "devlearn.__main__")
TOO_COMMON = ("__future__",)


def layer(module: str) -> str:
    """The layer a project module belongs to."""
    if module in ENTRY:
        return "entry"
    if module.startswith(tuple(f"{p}." for p in APP)) or module in APP:
        return "app"
    if module == "devlearn.agents" or module.startswith("devlearn.agents."):
        return "agents"
    if module == "devlearn.envs" or module.startswith("devlearn.envs."):
        return "envs"
    return "core"  # devlearn/* (config, registry, errors, model/, logging/, ...) and configs/


def modules() -> dict[str, Path]:
    """Every project module by its installed dotted name."""
    found = {}
    for folder, package in PACKAGES.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = path.relative_to(REPO / folder).with_suffix("").parts
            name = ".".join([package, *[p for p in parts if p != "__init__"]])
            found[name] = path
    return found


def imports(module: str, path: Path, known: set[str]) -> list[tuple[str, int, bool]]:
    """``(imported project module, line, inside a function)`` for every import statement of ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function |= {id(n) for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from devlearn import checkpoint` imports the module devlearn.checkpoint
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import devlearn.model.core` -> the module itself
                target = target.rsplit(".", 1)[0] if "." in target else ""
            if target and target != module:
                found.append((target, node.lineno, id(node) in in_function))
    return found


def graph() -> dict[str, list[tuple[str, int, bool]]]:
    mods = modules()
    return {m: imports(m, p, set(mods)) for m, p in mods.items()}


def test_every_import_runs_downward_or_within_its_layer():
    upward = []
    for module, edges in graph().items():
        for target, line, _ in edges:
            if LAYERS.index(layer(target)) > LAYERS.index(layer(module)):
                upward.append(f"{module}:{line} ({layer(module)}) imports {target} ({layer(target)})")
    assert not upward, "imports that run up a layer:\n" + "\n".join(upward)


def test_nothing_imports_the_app():
    into_app = [
        f"{module}:{line} imports {target}"
        for module, edges in graph().items()
        if layer(module) not in ("app", "entry")
        for target, line, _ in edges
        if layer(target) == "app"
    ]
    assert not into_app, "\n".join(into_app)


def test_the_import_graph_has_no_loop():
    edges = {m: {t for t, _, _ in e if t not in ENTRY} for m, e in graph().items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    loops: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                loops.append([*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    assert not loops, "import loops:\n" + "\n".join(" -> ".join(loop) for loop in loops)


def test_function_level_imports_say_what_they_defer():
    """An import inside a function only defers a heavy or optional dependency, and its comment says so."""
    silent = []
    for folder in PACKAGES:
        for path in sorted((REPO / folder).rglob("*.py")):
            lines = path.read_text().splitlines()
            tree = ast.parse("\n".join(lines))
            for fn in ast.walk(tree):
                if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                for node in ast.walk(fn):
                    if isinstance(node, (ast.Import, ast.ImportFrom)):
                        said = " ".join(lines[max(node.lineno - 2, 0) : node.end_lineno]).lower()
                        if "deferred" not in said:
                            silent.append(f"{path.relative_to(REPO)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not silent, "function-level imports without a '# deferred: why' comment:\n" + "\n".join(sorted(set(silent)))


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("devlearn.config", "core"),
        ("devlearn.model.core", "core"),
        ("devlearn.envs.cliff_edge.env", "envs"),
        ("devlearn.agents.developmental.agent", "agents"),
        ("devlearn.app.run", "app"),
        ("devlearn.probes.recall", "app"),
        ("devlearn", "entry"),
    ],
)
def test_layers_are_named_as_the_architecture_says(module, expected):
    assert layer(module) == expected


def test_the_checker_sees_an_upward_import_inside_a_function(tmp_path):
    """Guard the guard: a function-level import of the app from core is found."""
    source = tmp_path / "bad.py"
    source.write_text("def f():\n    from devlearn.app.run import train  # deferred: a test\n    return train\n")
    found = imports("devlearn.bad", source, {"devlearn.app.run", "devlearn.bad"})
    assert found == [("devlearn.app.run", 2, True)]
    assert LAYERS.index(layer(found[0][0])) > LAYERS.index(layer("devlearn.bad"))


MAX_FILE_LINES = 400  # a module a newcomer reads top to bottom in ten minutes
MAX_FUNCTION_LINES = 60  # a function that fits on a screen


def test_library_modules_and_functions_fit_on_a_screen():
    too_long = []
    for folder in PACKAGES:
        for path in sorted((REPO / folder).rglob("*.py")):
            text = path.read_text()
            name = path.relative_to(REPO)
            if len(text.splitlines()) > MAX_FILE_LINES:
                too_long.append(f"{name}: {len(text.splitlines())} lines (at most {MAX_FILE_LINES})")
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    length = node.end_lineno - node.lineno + 1
                    if length > MAX_FUNCTION_LINES:
                        too_long.append(f"{name}:{node.lineno} {node.name}: {length} lines (at most {MAX_FUNCTION_LINES})")
    assert not too_long, "\n".join(too_long)
