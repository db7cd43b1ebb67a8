"""The package's structure, checked on its source (no imports of the modules themselves):
short functions, no reaching into another module's private names, no import cycles, and
imports that follow the data flow operators → solvers → priors → training → evaluation."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "admm_jax"
MAX_FUNCTION_LINES = 80

# Layers of the data flow, lowest first. A module may import its own layer or lower ones at
# module level; a higher layer only lazily (inside a function), as a convenience entry point.
LAYERS = [
    {"admm_jax._checks", "admm_jax.metrics"},
    {"admm_jax.operators"},
    {"admm_jax.problems", "admm_jax.families", "admm_jax.presets", "admm_jax.wavelets",
     "admm_jax.admm", "admm_jax.rho_rules"},
    {"admm_jax.priors"},
    {"admm_jax.data", "admm_jax.train", "admm_jax.baselines"},
    {"admm_jax.evaluate", "admm_jax.pretrained_priors", "admm_jax.restore"},
    {"admm_jax.reproduce", "admm_jax.cli", "admm_jax"},
]


def _modules() -> dict[str, Path]:
    out = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        parts = f.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = f
    return out


MODULES = _modules()


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    is_pkg = MODULES[module].name == "__init__.py"
    base = module.split(".")
    base = base if is_pkg else base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str, top_level_only: bool) -> list[tuple[str, list[str], int]]:
    """(imported module, imported names, line) of ``module``'s admm_jax imports."""
    tree = ast.parse(MODULES[module].read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            if not target.startswith("admm_jax"):
                continue
            names = [a.name for a in node.names]
            submodules = [n for n in names if f"{target}.{n}" in MODULES]
            found += [(f"{target}.{n}", [], node.lineno) for n in submodules]  # a module
            rest = [n for n in names if n not in submodules]
            if rest:
                found.append((target, rest, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names
                      if a.name.startswith("admm_jax")]
    return found


def _layer(module: str) -> int:
    best = None
    for i, layer in enumerate(LAYERS):
        for prefix in layer:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (i, len(prefix))
    assert best is not None, f"{module} is in no layer of LAYERS"
    return best[0]


def _top(module: str) -> str:
    """The unit a module belongs to: admm_jax.<first component>."""
    return ".".join(module.split(".")[:2])


def test_no_function_over_80_lines():
    long = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} "
                                f"{node.name} ({n} lines)")
    assert not long, long


def test_no_module_imports_another_units_private_names():
    """``from admm_jax.x import _name`` only inside the unit admm_jax.x (a subpackage may share
    its private helpers); the private module admm_jax._checks itself is shared by the package,
    its functions are public."""
    bad = []
    for module in MODULES:
        for target, names, line in _imports(module, top_level_only=False):
            private = [n for n in names if n.startswith("_")]
            if private and _top(target) != _top(module):
                bad.append(f"{module}:{line} imports {private} from {target}")
    assert not bad, bad


def test_module_level_imports_have_no_cycles():
    graph = {m: {t for t, _, _ in _imports(m, top_level_only=True) if t in MODULES and t != m}
             for m in MODULES}
    # a cycle inside one subpackage (its __init__ and its submodules) is Python's business;
    # across units it is a design error
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in graph[m]:
            if state.get(t) == 1:
                cycle = stack[stack.index(t):] + [t]
                unit = _top(cycle[0])
                if unit == "admm_jax" or any(_top(c) != unit for c in cycle):
                    pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in MODULES:
        if m not in state:
            visit(m)


def test_module_level_imports_follow_the_data_flow():
    upward = []
    for module in MODULES:
        for target, _, line in _imports(module, top_level_only=True):
            if target in MODULES and _layer(target) > _layer(module):
                upward.append(f"{module}:{line} imports {target} (layer {_layer(target)} > "
                              f"{_layer(module)})")
    assert not upward, upward
