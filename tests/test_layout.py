"""The tree's own rules, read from the source: small modules and short functions in every
package of the tree and in the scripts, and layers that only import downwards."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Every top-level package, and the scripts beside them: each folder is checked on its own
# (test_each_checked_folder_has_modules), so a renamed or emptied one fails loudly.
CHECKED = ("app", "clients", "factory_sim", "telemetry", "pizza_tools", "scripts")
MODULE_MAX_LINES = 400
FUNCTION_MAX_LINES = 60
# Tables of data, not logic: Alembic's migrations write out the schema as it was.
EXEMPT = ("app/migrations/",)
# Lower layers never import the service (app/): it is built on them, not they on it.
NO_APP_IMPORTS = ("clients", "factory_sim", "telemetry")


def _modules(*packages: str) -> list[Path]:
    found = [p for package in packages for p in sorted((ROOT / package).rglob("*.py"))]
    return [p for p in found if not p.relative_to(ROOT).as_posix().startswith(EXEMPT)]


def _name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_no_module_over_the_limit() -> None:
    long = {
        _name(p): n
        for p in _modules(*CHECKED)
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MODULE_MAX_LINES
    }
    assert long == {}, f"modules over {MODULE_MAX_LINES} lines: split them by job"


def test_no_function_over_the_limit() -> None:
    long = {}
    for path in _modules(*CHECKED):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                lines = node.end_lineno - node.lineno + 1
                if lines > FUNCTION_MAX_LINES:
                    long[f"{_name(path)}:{node.lineno} {node.name}"] = lines
    assert long == {}, f"functions over {FUNCTION_MAX_LINES} lines"


def _imported(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", NO_APP_IMPORTS)
def test_lower_layers_never_import_the_service(package: str) -> None:
    upward = {
        _name(p): sorted(
            m
            for m in _imported(ast.parse(p.read_text(encoding="utf-8")))
            if m == "app" or m.startswith(("app.", "pizza_tools"))
        )
        for p in _modules(package)
    }
    assert {k: v for k, v in upward.items() if v} == {}


def test_the_service_never_imports_the_tools() -> None:
    """pizza_tools runs the service as a process; only the CLI loads it, inside the
    commands that need it (bench, drill), never at import."""
    imports = {}
    for path in _modules("app"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        found = _imported(ast.Module(body=top, type_ignores=[]))
        if any(m.startswith("pizza_tools") for m in found):
            imports[_name(path)] = sorted(found)
    assert imports == {}


def test_every_top_level_package_is_checked() -> None:
    """A new package beside app/ is held to the same rules from its first commit."""
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages <= set(CHECKED), f"add {sorted(packages - set(CHECKED))} to CHECKED"


@pytest.mark.parametrize("folder", CHECKED)
def test_each_checked_folder_has_modules(folder: str) -> None:
    """The rules above read real files: an empty glob would pass them all."""
    assert _modules(folder), f"{folder}/ holds no Python module: is CHECKED out of date?"


def test_the_checks_see_the_tree() -> None:
    assert len(_modules(*CHECKED)) > 100
    assert any(p.name == "workflow.py" for p in _modules("app"))
