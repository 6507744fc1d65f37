"""The package imports cleanly: every module on its own in a fresh interpreter, no import cycle
between its modules, every import pointing down the layers, nothing reaching into the package
root for a name, and no forwarding stubs."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

import geocopgen

ROOT = Path(geocopgen.__file__).parent


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages([str(ROOT)], prefix="geocopgen."))


def _module_of(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> Iterator[tuple[str, int, str]]:
    """(module, line, geocopgen module it imports) for every import anywhere in its source.

    Imports inside functions count: one that closes a loop (``readers`` importing
    ``xarray_input`` lazily while ``xarray_input`` imports ``readers``) is a cycle postponed,
    not a cycle removed; one that points up a layer is a layer broken, however late it runs.
    """
    known = set(_modules()) | {"geocopgen"}
    for path in ROOT.rglob("*.py"):
        name = _module_of(path)
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = {a.name for a in node.names if a.name in known}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    pkg = name if is_pkg else name.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        pkg = pkg.rpartition(".")[0]
                    base = f"{pkg}.{base}".rstrip(".")
                # ``from pkg import mod`` imports the module; a name from ``pkg`` imports pkg
                subs = {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known}
                whole = base in known and len(subs) < len(node.names)
                targets = subs | ({base} if whole else set())
            else:
                continue
            for target in sorted(targets - {name}):
                yield name, node.lineno, target


def _import_edges() -> dict[str, set[str]]:
    """Module → every geocopgen module it imports, anywhere in its source."""
    graph: dict[str, set[str]] = {_module_of(path): set() for path in ROOT.rglob("*.py")}
    for name, _, target in _imports():
        graph[name].add(target)
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


#: The package's layers, lowest first, by the name under ``geocopgen`` (a module or a package):
#: a module imports only from its own layer or a lower one, so each layer can be read, tested
#: and changed knowing only what is beneath it. ``domain`` (a top-level module) clips decoded
#: outputs chip by chip, so it sits on ``raster``'s layer; ``models`` (the 4-modality tensors)
#: sits with ``copgen``, which builds on it. The package root sits on top: nothing below may
#: use it.
LAYERS: tuple[frozenset[str], ...] = tuple(
    frozenset(names.split())
    for names in (
        "_version errors",
        "modalities precision prefetch outputs options weights baselines",
        "raster domain",
        "io",
        "sources",
        "models copgen",
        "latents",
        "translation",
        "training evaluation",
        "api",
        "accessor many",
        "cli __main__ geocopgen",
    )
)


def _layer(module: str) -> int:
    """The index in :data:`LAYERS` of ``geocopgen.<name>...`` (the root: ``geocopgen``)."""
    name = module.split(".")[1] if "." in module else module
    found = [i for i, layer in enumerate(LAYERS) if name in layer]
    assert found, f"{module} is in no layer: add {name!r} to LAYERS in tests/test_imports.py"
    return found[0]


def _upward(imports: Iterable[tuple[str, int, str]]) -> list[str]:
    """Each import that points up a layer, as ``module:line imports target (layer a < b)``."""
    return [
        f"{module}:{line} imports {target} (layer {_layer(module)} < {_layer(target)})"
        for module, line, target in imports
        if _layer(module) < _layer(target)
    ]


def test_every_import_points_down_the_layers():
    offenders = _upward(_imports())
    assert not offenders, "imports that point up a layer:\n" + "\n".join(offenders)


def test_every_module_has_a_layer():
    for module in _modules():
        _layer(module)


def test_the_layer_check_names_the_offending_import():
    assert _upward([("geocopgen.raster.mosaic", 50, "geocopgen.io.decoding")]) == [
        "geocopgen.raster.mosaic:50 imports geocopgen.io.decoding (layer 2 < 3)"
    ]
    assert _upward([("geocopgen.io.decoding", 9, "geocopgen.raster.grid")]) == []


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
