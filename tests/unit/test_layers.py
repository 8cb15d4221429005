"""The layers' boundaries: a pure domain, and no layer importing one above it."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import driver.domain

DRIVER = Path(driver.domain.__file__).parent.parent
# what importing the domain must never bring in, by the name's first dotted parts
IMPURE = (
    "flask",
    "werkzeug",
    "sqlalchemy",
    "alembic",
    "dns",  # dnspython; the domain's own DNS rules are driver.domain.dns
    "driver.storage",
    "driver.usecases",
    "driver.entrypoints",
    "driver.adapters",
    "driver.observability",
)
# layer -> the layers above it, which it must not import (even inside a function)
ABOVE = {
    "domain": ("driver.storage", "driver.usecases", "driver.entrypoints", "driver.adapters"),
    "storage": ("driver.usecases", "driver.entrypoints"),
    "usecases": ("driver.entrypoints",),
    "adapters": ("driver.entrypoints",),
}


def domain_modules() -> list[str]:
    found = pkgutil.walk_packages(driver.domain.__path__, prefix="driver.domain.")
    return sorted(module.name for module in found)


def is_under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def imported_names(path: Path) -> list[str]:
    """Every absolute module name a file imports, at its top or inside a function."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: a relative import; the layer test reads absolute ones"
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def test_the_domain_modules_are_found_without_a_list():
    found = domain_modules()
    assert {"driver.domain.addresses", "driver.domain.errors", "driver.domain.pools"} <= set(found)
    files = {p.stem for p in (DRIVER / "domain").glob("*.py")} - {"__init__"}
    assert {name.rsplit(".", 1)[1] for name in found} == files


def test_importing_any_domain_module_imports_no_framework_storage_or_outer_layer():
    # a fresh interpreter: modules this test process imported earlier would hide an import
    code = (
        "import importlib, json, sys\n"
        "impure = lambda: {p for m in sys.modules "
        f"for p in {IMPURE!r} if m == p or m.startswith(p + '.')}}\n"
        "brought = {}\n"
        f"for name in {domain_modules()!r}:\n"
        "    before = impure()\n"
        "    importlib.import_module(name)\n"
        "    if impure() - before:\n"
        "        brought[name] = sorted(impure() - before)\n"
        "print(json.dumps(brought))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == {}, "domain modules that import what the domain must not"


@pytest.mark.parametrize("layer", sorted(ABOVE))
def test_no_layer_imports_a_layer_above_it(layer):
    files = sorted((DRIVER / layer).rglob("*.py"))
    assert files, f"driver/{layer} has no modules"
    upward = [
        f"{path.relative_to(DRIVER.parent)} imports {name}"
        for path in files
        for name in imported_names(path)
        if is_under(name, ABOVE[layer])
    ]
    assert upward == []
