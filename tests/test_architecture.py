"""The layers of docs/architecture.md, read from the code's own imports.

The graph covers every project module under model/, evaluation/, pipeline/ and cluster/, with
the imports at module level and inside functions alike (an import inside a function still
ties two modules together; hiding it there only hides a cycle). It must have no cycle, at the
level of modules and at the level of packages (a package's modules taken as one node), and
lower layers never import higher ones. A function-level import of a project module is
allowed only where that module pulls in a heavy third-party package at import time (torch,
ray, mlflow, lm-eval, ...), so that `ownlm --help` and the config stay fast: everywhere else
the import sits at the top of the file, where a reader sees it.
"""
from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("model", "evaluation", "pipeline", "cluster")
# Lower layers first: a module may import its own layer and those before it, never a later one.
LAYERS = ("model", "evaluation", "cluster", "pipeline")
HEAVY = ("torch", "ray", "mlflow", "lm_eval", "transformers", "datasets", "fastapi", "uvicorn", "starlette")


@dataclass(frozen=True)
class Import:
    source: str  # importing module, dotted
    target: str  # imported project module, dotted
    lazy: bool  # inside a function (or method) body
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.cache
def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def resolve(name: str) -> str | None:
    """The project module that `import name` loads last (the longest known prefix)."""
    modules = project_modules()
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        candidate = ".".join(parts[:i])
        if candidate in modules:
            return candidate
    return None


def _imported_names(node: ast.AST, module: str) -> list[str]:
    """The dotted names an import statement loads: `from a.b import c` loads `a.b.c` when that is
    a module, else `a.b` (c is a name in it)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:  # relative: from . import x
            base = module.split(".")[: len(module.split(".")) - node.level + (module in _packages())]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        names = [f"{prefix}.{a.name}" for a in node.names]
        return [n if n in project_modules() else prefix for n in names]
    return []


@functools.cache
def _packages() -> frozenset[str]:
    return frozenset(module_name(p) for p in project_modules().values() if p.name == "__init__.py")


class _Visitor(ast.NodeVisitor):
    def __init__(self, module: str):
        self.module, self.depth, self.found = module, 0, []

    def visit_FunctionDef(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Import(self, node):
        self.found.append((node, self.depth > 0))

    visit_ImportFrom = visit_Import


@functools.cache
def _parsed(module: str) -> list[tuple[ast.AST, bool]]:
    visitor = _Visitor(module)
    visitor.visit(ast.parse(project_modules()[module].read_text()))
    return visitor.found


@functools.cache
def imports() -> list[Import]:
    out = []
    for module in project_modules():
        for node, lazy in _parsed(module):
            targets = {resolve(n) for n in _imported_names(node, module)} - {None, module}
            out += [Import(module, t, lazy, node.lineno) for t in sorted(targets)]
    return out


def third_party(module: str, lazy: bool) -> set[str]:
    """Top-level names of the non-project packages a module imports (at module level, or lazily)."""
    names = set()
    for node, is_lazy in _parsed(module):
        if is_lazy == lazy and not getattr(node, "level", 0):
            names |= {n.split(".")[0] for n in _imported_names(node, module) if n and resolve(n) is None}
    return names


@functools.cache
def eager_closure(module: str) -> frozenset[str]:
    """Third-party packages that importing `module` loads (following module-level project imports)."""
    seen, todo, heavy = set(), [module], set()
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        heavy |= third_party(m, lazy=False)
        todo += [i.target for i in imports() if i.source == m and not i.lazy]
        # Importing a.b.c runs a/__init__ and a/b/__init__ first.
        parts = m.split(".")
        todo += [".".join(parts[:k]) for k in range(1, len(parts)) if ".".join(parts[:k]) in project_modules()]
    return frozenset(heavy)


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph, as a path that ends where it starts, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def package_of(module: str) -> str:
    """The node a module belongs to at package level: its sub-package (pipeline.curate), or itself."""
    parts = module.split(".")
    if len(parts) >= 3 or (len(parts) == 2 and module in _packages()):
        return ".".join(parts[:2])
    return module


def _graph(node_of) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for i in imports():
        a, b = node_of(i.source), node_of(i.target)
        if a != b:
            edges.setdefault(a, set()).add(b)
    return edges


def _where(a: str, b: str, node_of=lambda m: m) -> str:
    return ", ".join(f"{i.source}:{i.line}{' (in a function)' if i.lazy else ''}" for i in imports()
                     if node_of(i.source) == a and node_of(i.target) == b)


def describe(cycle: list[str], node_of=lambda m: m) -> str:
    return " -> ".join(cycle) + "\n" + "\n".join(
        f"  {a} -> {b}: {_where(a, b, node_of)}" for a, b in zip(cycle, cycle[1:]))


# ---------------------------------------------------------------- the checker checks itself


def test_find_cycle_finds_one_and_only_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_imports_inside_functions():
    lazy = [i for i in imports() if i.lazy]
    assert lazy, "no function-level import found: the visitor is blind to them"
    assert any(i.source.startswith("pipeline") and i.target.startswith("model") for i in imports())


# ---------------------------------------------------------------- the rules


def test_no_import_cycle_between_modules():
    cycle = find_cycle(_graph(lambda m: m))
    assert cycle is None, "import cycle (see docs/architecture.md, layers):\n" + describe(cycle)


def test_no_import_cycle_between_packages():
    cycle = find_cycle(_graph(package_of))
    assert cycle is None, "package cycle (see docs/architecture.md, layers):\n" + describe(cycle, package_of)


@pytest.mark.parametrize("lower", LAYERS[:-1])
def test_lower_layers_never_import_higher_ones(lower):
    higher = LAYERS[LAYERS.index(lower) + 1:]
    bad = [f"{i.source}:{i.line} imports {i.target}" for i in imports()
           if i.source.split(".")[0] == lower and i.target.split(".")[0] in higher]
    assert not bad, f"{lower}/ sits below {', '.join(higher)} (docs/architecture.md):\n  " + "\n  ".join(bad)


def test_evaluation_and_cluster_do_not_import_each_other():
    bad = [f"{i.source}:{i.line} imports {i.target}" for i in imports()
           if {i.source.split(".")[0], i.target.split(".")[0]} == {"evaluation", "cluster"}]
    assert not bad, "\n".join(bad)


def test_lazy_project_imports_only_defer_heavy_packages():
    """An import inside a function is there to keep torch, Ray or MLflow out of a fast path
    (the CLI, the config), never to dodge a cycle or to hide a dependency."""
    bad = []
    for i in imports():
        if i.lazy and not (eager_closure(i.target) & set(HEAVY)):
            bad.append(f"{i.source}:{i.line} imports {i.target} inside a function, but {i.target} loads "
                       f"no heavy package: import it at the top of the file")
    assert not bad, "\n".join(bad)
