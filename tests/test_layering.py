"""The package's layering holds: no import cycles, and a worker never loads the store.

The import graph is read from the source with ``ast``; the runtime checks import
modules in a fresh interpreter and look at ``sys.modules``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import elastic

PACKAGE = Path(elastic.__file__).parent


def module_name(path: Path) -> str:
    """``elastic/server/api.py`` -> ``elastic.server.api`` (a package is its ``__init__``)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_time_imports(path: Path, modules: set[str]) -> set[str]:
    """The package modules ``path`` imports when it is imported: not those inside
    functions (lazy on purpose: they run later, if ever), nor under ``if TYPE_CHECKING:``."""
    found: set[str] = set()
    for node in _import_time_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name in modules and name != module_name(path)}


def _import_time_nodes(tree: ast.AST) -> list[ast.AST]:
    """The nodes of ``tree`` that run on import: not function bodies nor TYPE_CHECKING blocks."""
    nodes, pending = [], [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            pending += node.orelse
            continue
        nodes.append(node)
        pending += ast.iter_child_nodes(node)
    return nodes


def ancestors(name: str) -> set[str]:
    """The packages above module ``name`` (``a.b.c`` -> ``a``, ``a.b``)."""
    return {name.rsplit(".", depth)[0] for depth in range(1, name.count(".") + 1)}


def import_graph() -> dict[str, set[str]]:
    """Each ``elastic`` module -> the ``elastic`` modules it imports when imported.

    Importing ``a.b.c`` also runs ``a/b/__init__``, so those packages count too, but
    for a module's own packages, which are always loaded before it (an explicit
    ``from elastic import x`` in ``elastic.client`` does count).
    """
    paths = [path for path in PACKAGE.rglob("*.py") if "migrations" not in path.parts]
    modules = {module_name(path) for path in paths}
    graph = {}
    for path in paths:
        name = module_name(path)
        imported = import_time_imports(path, modules)
        packages = set().union(*map(ancestors, imported)) & modules - ancestors(name)
        graph[name] = (imported | packages) - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle in ``graph`` (as the list of modules around it), or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = "open"
        stack.append(name)
        for child in sorted(graph.get(name, ())):
            if state.get(child) == "open":
                return [*stack[stack.index(child):], child]
            if child not in state and (cycle := visit(child)):
                return cycle
        stack.pop()
        state[name] = "done"
        return None

    for name in sorted(graph):
        if name not in state and (cycle := visit(name)):
            return cycle
    return None


def modules_loaded_by(*names: str) -> set[str]:
    """The modules a fresh interpreter holds after importing ``names``."""
    code = f"import sys\nimport {', '.join(names)}\nprint('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    return set(done.stdout.split())


def test_the_package_has_no_import_cycles() -> None:
    assert find_cycle(import_graph()) is None, " -> ".join(find_cycle(import_graph()) or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_a_worker_process_never_imports_sqlalchemy_or_the_server() -> None:
    loaded = modules_loaded_by("elastic.cli", "elastic.worker.loop", "elastic.worker.status_server",
                               "elastic.worker.presets", "elastic.providers.shared_limits",
                               "elastic.executors")
    assert not {name for name in loaded if name.split(".")[0] in ("sqlalchemy", "alembic")}
    assert not {name for name in loaded if name.startswith(("elastic.server", "elastic.store"))}


def test_importing_the_task_rules_loads_neither_numpy_nor_the_executors_nor_the_client() -> None:
    loaded = modules_loaded_by("elastic.tasks", "elastic.worker_types")
    assert "numpy" not in loaded
    assert not {name for name in loaded
                if name.startswith(("elastic.executors", "elastic.client", "elastic.kernels"))}
