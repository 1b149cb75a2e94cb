"""Every users test signs in often: cheap argon2 parameters (tests/utils/builders.py)."""

from __future__ import annotations

import pytest

from tests.utils.builders import fast_password_hashing  # noqa: F401


@pytest.fixture(autouse=True)
def _cheap_hashing(fast_password_hashing: None) -> None:  # noqa: F811
    """Same algorithm, same checks, a fraction of the cost."""
