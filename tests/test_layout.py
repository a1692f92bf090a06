"""The code's shape, held by tests: short functions, no import circle, and importing the package
configures nothing."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent / "kit"
MAX_FUNCTION_LINES = 60


def test_no_function_in_kit_is_longer_than_60_lines():
    long = []
    for path in sorted(KIT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(KIT.parent)}:{node.lineno} {node.name} ({n} lines)")
    assert long == []


def test_importing_the_kit_loads_no_tensorflow_and_leaves_the_environment_alone():
    code = (
        "import os, sys; before = dict(os.environ); "
        "import kit.cli, kit.models.cnn, kit.models.scratch, kit.training, kit.report.page, kit.ensemble; "
        "print('tensorflow' in sys.modules, dict(os.environ) == before)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def _module_name(path: Path) -> str:
    """kit/models/cnn/net.py -> "kit.models.cnn.net"; kit/models/__init__.py -> "kit.models"."""
    parts = path.relative_to(KIT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported_modules(tree: ast.Module, name: str, is_package: bool, modules: set[str]) -> set[str]:
    """The kit modules that module `name` imports anywhere (in functions too), less those only
    under `if TYPE_CHECKING:`, which never run. `from P import X` counts P.X where that is a
    module, else P."""
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            source = ".".join(p for p in (base, node.module) if p)
            for a in node.names:
                found.add(f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {m for m in found if m in modules and m != name}


def _import_graph() -> dict[str, set[str]]:
    """{kit module: the kit modules it imports}, read from the source with ast (nothing is run)."""
    paths = {_module_name(p): p for p in sorted(KIT.rglob("*.py"))}
    modules = set(paths)
    return {
        name: _imported_modules(ast.parse(p.read_text()), name, p.name == "__init__.py", modules)
        for name, p in paths.items()
    }


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None: a depth-first search that meets a module
    still on its own path has gone round."""
    done: set[str] = set()
    path: list[str] = []

    def search(m: str) -> list[str] | None:
        if m in path:
            return path[path.index(m) :] + [m]
        if m in done:
            return None
        path.append(m)
        for n in sorted(graph[m]):
            if found := search(n):
                return found
        path.pop()
        done.add(m)
        return None

    for m in sorted(graph):
        if found := search(m):
            return found
    return None


def test_kit_has_no_import_circle():
    # A circle means neither module can be read, tested or moved without the other; a lazy
    # import inside a function only hides one, so those count too.
    cycle = _cycle(_import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)
