"""What pyproject.toml ships and declares: every package-data pattern matches a file, and
every third-party module the shipped code imports comes from a declared dependency."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DATA: dict[str, list[str]] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"][
    "setuptools"
]["package-data"]


@pytest.mark.parametrize(
    ("package", "pattern"),
    [(package, pattern) for package, patterns in PACKAGE_DATA.items() for pattern in patterns],
)
def test_every_package_data_pattern_ships_a_file(package: str, pattern: str) -> None:
    # A pattern matching nothing is a file someone thinks is shipped and is not.
    assert list((ROOT / package).glob(pattern)), f"{package}/{pattern} matches no file"


def _distribution(module: str, owners: dict[str, list[str]]) -> str | None:
    """The distribution that installs ``module`` (a dotted name): the longest prefix of
    it that a distribution owns (namespace packages such as opentelemetry are shared)."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        found = owners.get(".".join(parts[:end]))
        if found:
            return found[0]
    return None


def _owners() -> dict[str, list[str]]:
    """Module (dotted, packages and modules) -> the distributions whose files hold it."""
    owners: dict[str, list[str]] = {}
    for dist in importlib.metadata.distributions():
        for file in dist.files or ():
            name = str(file)
            if name.endswith(".py") and not name.startswith(".."):
                module = name[:-3].removesuffix("/__init__").replace("/", ".")
                owners.setdefault(module, []).append(dist.metadata["Name"])
    return owners


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_third_party_import_of_the_shipped_code_is_declared() -> None:
    """An import served only by some other package's dependency breaks when that one
    changes its own: app/, clients/, factory_sim/, telemetry/ and pizza_tools/ import only what
    pyproject.toml declares."""
    declared = {
        _normal(re.split(r"[<>=!~\[; ]", requirement)[0])
        for requirement in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
            "dependencies"
        ]
    }
    owners = _owners()
    ours = ("app", "clients", "factory_sim", "telemetry", "pizza_tools")
    undeclared: dict[str, str] = {}
    for package in ours:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    # `from opentelemetry import trace`: the name may be the module.
                    modules = [f"{node.module}.{alias.name}" for alias in node.names]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top in sys.stdlib_module_names or top in ours:
                        continue
                    dist = _distribution(module, owners)
                    if dist is None or _normal(dist) not in declared:
                        undeclared[module] = f"{path.relative_to(ROOT)} ({dist})"
    assert undeclared == {}
