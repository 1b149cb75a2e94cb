"""A pizza factory that answers as the real JWT Pizza factory does, with chaos that tests
switch on and off.

The real factory's answers are the model (tests/real_factory/test_differential.py sends
the same requests to both and compares): pizzas whose claims sit in the protected header,
remediation links built from the request's host name, each chaos mode's answer, the
vendor record (with its `apiKey`, and after a fix `chaos: {"type": "none", ...,
"fixDate"}`), the fix and its answers, the admin's removal of a chaos, and 401/400 where
the real factory says them. The vendor's key is `SimulatorConfig.api_key`, the factory
admin's `admin_key`.

Simulator only, for tests (marked so where they are): the chaos modes `notjson` and
`hang`; a chaos that starts at once, or after `start_delay_s` (the real factory picks a
random time the next morning); the throttle delay (32 s on the real factory); link styles
other than the real path shape, and `GET /api/support/resolve` for them;
`GET /api/sim/stats`.

`state.py` keeps the factory's data as the real one keeps it; `app.py` is its HTTP surface.
"""

from factory_sim.app import create_simulator_app
from factory_sim.state import (
    ADMIN_ID,
    BAD_JWT,
    DEV_ADMIN_KEY,
    REAL_CHAOS,
    VENDOR_ID,
    SimulatorConfig,
)

__all__ = [
    "ADMIN_ID",
    "BAD_JWT",
    "DEV_ADMIN_KEY",
    "REAL_CHAOS",
    "VENDOR_ID",
    "SimulatorConfig",
    "create_simulator_app",
]
