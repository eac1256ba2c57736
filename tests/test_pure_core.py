"""The pure core imports no MQTT, GPIO, SQLite, sockets or ParkGuard's IO packages.

Each module of ``parkguard.core`` is imported in a fresh interpreter, which then reports
what got imported. pydantic (which the core may use) pulls in ``socket`` by itself, through
``importlib.metadata`` -> ``email.utils``, so the child first loads pydantic and builds one
model, and only what happens after that counts: every module that appears in ``sys.modules``
and every ``import`` statement executed (even of an already-loaded module) while the core
module loads. An AST scan also catches imports hidden inside functions.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import parkguard.core

FORBIDDEN = ("paho", "gpiozero", "sqlite3", "sqlite_utils", "socket", "_socket",
             "wire", "cli", "broker", "gateway", "firmware", "simulator")

_CHILD = r"""
import builtins, importlib, importlib.util, json, sys

import pydantic

class _Footprint(pydantic.BaseModel):  # pydantic's own imports are not the core's doing
    x: int = 0

forbidden = set(sys.argv[2].split(","))
baseline = set(sys.modules)
statements = []
real_import = builtins.__import__

def spying_import(name, globals=None, locals=None, fromlist=(), level=0):
    importer = (globals or {}).get("__name__", "?")
    full = name
    if level:
        full = importlib.util.resolve_name("." * level + name, (globals or {}).get("__package__"))
    if full.split(".")[0] in forbidden:
        statements.append([importer, full])
    return real_import(name, globals, locals, fromlist, level)

builtins.__import__ = spying_import
importlib.import_module(sys.argv[1])
builtins.__import__ = real_import
loaded = sorted(m for m in set(sys.modules) - baseline if m.split(".")[0] in forbidden)
print(json.dumps({"loaded": loaded, "statements": statements}))
"""


def _core_modules() -> list[str]:
    found = ["parkguard.core"]
    found += [info.name for info in pkgutil.walk_packages(parkguard.core.__path__,
                                                          prefix="parkguard.core.")]
    return sorted(found)


CORE_MODULES = _core_modules()


def test_walking_the_core_package_finds_its_modules() -> None:
    assert "parkguard.core.tariffs.quote" in CORE_MODULES


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_imports_nothing_forbidden_in_a_fresh_interpreter(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-I", "-c", _CHILD, module, ",".join(FORBIDDEN)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["loaded"] == [], f"importing {module} loaded {report['loaded']}"
    assert report["statements"] == [], (
        f"importing {module} ran import statements [importer, imported]: {report['statements']}"
    )


def _imported_names(tree: ast.AST, package: str) -> list[str]:
    """Absolute names of everything a module's source imports, relative imports resolved."""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                names.append(".".join([*base, *([node.module] if node.module else [])]))
            elif node.module:
                names.append(node.module)
    return names


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_source_has_no_forbidden_import_even_inside_functions(module: str) -> None:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    package = module if spec.submodule_search_locations is not None else module.rpartition(".")[0]
    source = Path(spec.origin).read_text(encoding="utf-8")
    names = _imported_names(ast.parse(source), package)
    bad = [name for name in names if name.split(".")[0] in FORBIDDEN]
    assert bad == [], f"{module} imports {bad}"


def test_the_import_spy_catches_a_forbidden_import(tmp_path: Path) -> None:
    """The fresh-interpreter check would see it if a core module did import the network."""
    (tmp_path / "leaky.py").write_text(
        "import socket\nimport sqlite3\nfrom wire.contract import topics\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n" + _CHILD,
         "leaky", ",".join(FORBIDDEN)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {"sqlite3", "wire.contract.topics"} <= set(report["loaded"])
    assert ["leaky", "socket"] in report["statements"]
    assert ["leaky", "sqlite3"] in report["statements"]
    assert ["leaky", "wire.contract"] in report["statements"]


def test_the_source_scan_resolves_relative_imports_and_sees_into_functions() -> None:
    tree = ast.parse("def later():\n    import paho.mqtt.client\nfrom .. import gateway\n"
                     "from ...broker import bus\n")
    assert sorted(_imported_names(tree, "parkguard.core")) == [
        "broker", "paho.mqtt.client", "parkguard"]
