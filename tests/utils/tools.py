"""Debian's tools the tests run (promtool, amtool, Prometheus, Alertmanager): scripts/test
installs them; CI must have them, elsewhere a test without one is skipped."""

from __future__ import annotations

import os
import shutil

import pytest


def debian_tool(command: str, package: str) -> str:
    """The path of ``command``; fails in CI and skips elsewhere when it is missing."""
    path = shutil.which(command)
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{command} is missing: apt-get install {package} (CI must run this)")
        pytest.skip(f"{command} not installed (apt-get install {package})")
    return path
