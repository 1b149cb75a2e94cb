"""Tools that run the service as a process and measure it: ``pizza bench``
(README, Performance) and ``pizza drill`` (docs/telemetry.md#the-drill).

They sit beside ``app/`` and are never imported by the service: ``app.cli`` loads them
only when one of their commands runs.
"""
