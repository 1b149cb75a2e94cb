"""The simulator's own tests meet it as the factory client's tests do: one simulated
factory on a real port per module, with a clock the test moves."""

from tests.clients.conftest import (  # noqa: F401 (fixtures, found by pytest by name)
    simulator,
    simulator_app,
    simulator_clock,
    simulator_url,
)
