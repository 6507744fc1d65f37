"""The package imports cleanly: every module on its own in a fresh interpreter, no import cycle
between its modules, nothing reaching into the package root for a name, and no forwarding stubs."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import geocopgen

ROOT = Path(geocopgen.__file__).parent


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages([str(ROOT)], prefix="geocopgen."))


def _module_of(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_edges() -> dict[str, set[str]]:
    """Module → every geocopgen module it imports, anywhere in its source.

    Imports inside functions count: one that closes a loop (``readers`` importing
    ``xarray_input`` lazily while ``xarray_input`` imports ``readers``) is a cycle postponed,
    not a cycle removed.
    """
    known = set(_modules()) | {"geocopgen"}
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        name = _module_of(path)
        is_pkg = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in known}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    pkg = name if is_pkg else name.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        pkg = pkg.rpartition(".")[0]
                    base = f"{pkg}.{base}".rstrip(".")
                if base in known:
                    edges.add(base)
                edges |= {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known}
        graph[name] = edges - {name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            # importing a.b.c runs a and a.b first; a package importing its own submodule is fine
            if node.startswith(nxt + "."):
                continue
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_between_modules():
    cycle = _cycle(_import_edges())
    assert cycle is None, " -> ".join(cycle or [])


def test_no_module_takes_names_from_the_package_root():
    """``geocopgen/__init__`` registers the accessor; a module that needs ``__version__`` takes
    it from ``geocopgen._version``, not from the root (which would import it half-initialised)."""
    offenders = []
    for path in ROOT.rglob("*.py"):
        if path == ROOT / "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            root_import = isinstance(node, ast.Import) and any(
                a.name == "geocopgen" for a in node.names
            )
            root_name = (
                isinstance(node, ast.ImportFrom)
                and node.module == "geocopgen"
                and any(f"geocopgen.{a.name}" not in _modules() for a in node.names)
            )
            if root_import or root_name:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_every_module_imports_on_its_own_in_a_fresh_interpreter():
    code = (
        "import importlib, sys, warnings\n"
        "warnings.simplefilter('ignore')\n"
        "failed = []\n"
        "for name in sys.argv[1:]:\n"
        "    for key in [k for k in sys.modules if k.split('.')[0] == 'geocopgen']:\n"
        "        del sys.modules[key]  # each module from scratch, its own imports only\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        failed.append(f'{name}: {exc!r}')\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, *_modules()],
        cwd=ROOT.parent,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("old", ["grid", "mosaic", "tiling", "rastergrid", "_compat"])
def test_no_shim_modules_remain(old):
    """The package was never released, so moved modules leave no forwarding stubs behind."""
    assert not (ROOT / f"{old}.py").exists()


def test_the_version_has_its_own_module():
    from geocopgen._version import __version__

    assert geocopgen.__version__ == __version__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.import_module("geocopgen.raster.grid")
