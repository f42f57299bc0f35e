"""The tree shows the layers, and imports only go down.

Layers, bottom-up: the private root modules (``_version``, ``_logs``) < ``pipeline`` <
``limiting`` < ``app`` < ``client`` < ``bulk`` < the CLI; ``testing`` (the fake server) may
import only the pipeline and the root modules, the CLI may import it. The package's
``__init__`` and the compatibility modules of released paths sit on top: they only re-export.

Every import counts, also one inside a function (a lazy import is still a dependency) and one
under ``if TYPE_CHECKING:`` (none is needed today, so none is excused).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import keyapi_async

PACKAGE = Path(keyapi_async.__file__).parent
ROOT = "keyapi_async"

# a module's layer: its first path part under keyapi_async/
LAYER_OF_PART = {
    "_version": "root",
    "_logs": "root",
    "pipeline": "pipeline",
    "limiting": "limiting",
    "app": "app",
    "client": "client",
    "bulk": "bulk",
    "cli": "cli",
    "__main__": "cli",
    "testing": "testing",
    "__init__": "surface",
    # compatibility modules for paths named by round one's released docs
    "redis_limiter": "surface",
    "idset": "surface",
}
ORDER = ["root", "pipeline", "limiting", "app", "client", "bulk", "cli", "surface"]
ALLOWED = {layer: set(ORDER[: i + 1]) for i, layer in enumerate(ORDER)}
ALLOWED["testing"] = {"root", "pipeline", "testing"}
ALLOWED["cli"] |= {"testing"}
ALLOWED["surface"] |= {"testing"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        found[".".join([ROOT, *parts])] = path
    return found


MODULES = _modules()


def _layer(module: str) -> str:
    parts = module.split(".")
    return LAYER_OF_PART["__init__" if len(parts) == 1 else parts[1]]


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _imports(module: str) -> set[str]:
    """Every keyapi_async module that ``module`` imports, at any depth of its code."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    package = module if _is_package(module) else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # ``from pkg import submodule`` imports the submodule
            names = [target] + [f"{target}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name.startswith(ROOT) and name != module:
                found.add(name)
    return found


GRAPH = {module: _imports(module) for module in MODULES}


def test_every_module_has_a_layer() -> None:
    assert {_layer(m) for m in MODULES} <= set(ALLOWED)
    for layer in ("pipeline", "limiting", "app", "client", "bulk"):
        assert f"{ROOT}.{layer}" in MODULES  # the subpackage exists
        assert ast.get_docstring(ast.parse(MODULES[f"{ROOT}.{layer}"].read_text())), layer


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_go_down(module: str) -> None:
    layer = _layer(module)
    upward = sorted(
        target for target in GRAPH[module]
        if _layer(target) not in ALLOWED[layer]
        # a subpackage's __init__ is a docstring, not a dependency
        and not (_is_package(target) and target != ROOT)
    )
    assert upward == [], f"{module} ({layer}) imports {upward}"


def test_subpackage_inits_import_nothing_of_the_package() -> None:
    for module in MODULES:
        if _is_package(module) and module != ROOT and _layer(module) != "testing":
            assert GRAPH[module] == set(), module


def test_no_import_cycles() -> None:
    graph = {m: {t for t in GRAPH[m] if not _is_package(t)} for m in MODULES}
    done: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycles.append([*path[path.index(module):], module])
            return
        if module in done:
            return
        for target in sorted(graph[module]):
            visit(target, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert cycles == []


def test_the_layers_test_sees_imports() -> None:
    # a guard against a parser that finds nothing: known edges, one of them lazy
    assert f"{ROOT}.pipeline.errors" in GRAPH[f"{ROOT}.client.client"]
    assert f"{ROOT}.bulk.sinks.postgres" in GRAPH[f"{ROOT}.bulk.outputs"]  # inside a function
    assert f"{ROOT}.testing.cli" in GRAPH[f"{ROOT}.cli"]


def test_import_keyapi_async_imports_no_optional_extra() -> None:
    code = (
        "import sys, keyapi_async\n"
        "extras = ('redis', 'asyncpg', 'pyarrow', 'opentelemetry', 'rich')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in extras))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"
