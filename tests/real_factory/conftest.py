"""Fixtures: the real factory (tests/utils/real_factory.py), one per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.conftest import processes  # noqa: F401 - the e2e tests' process fixture
from tests.utils.real_factory import RealFactory, RealFactoryError, Vendor, running_real_factory


@pytest.fixture(scope="module")
def real_factory() -> Iterator[RealFactory]:
    """The real factory on its own database; a start that fails fails the test, with why."""
    try:
        with running_real_factory() as factory:
            yield factory
    except RealFactoryError as exc:
        pytest.fail(f"the real factory: {exc}")


@pytest.fixture
def vendor(real_factory: RealFactory) -> Vendor:
    """A vendor of this test's own: no chaos another test left."""
    return real_factory.new_vendor()
