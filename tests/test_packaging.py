"""What pyproject.toml ships: every package-data pattern matches a file (issue 9)."""

from __future__ import annotations

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
