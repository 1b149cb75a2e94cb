"""`python -m telemetry.slo`: write (or `--check`) telemetry/alerts/slo.rules.yaml."""

import sys

from telemetry.slo.generate import main

sys.exit(main())
