"""Tools that run the service as a process and measure it: ``pizza bench``
(performance.md) and ``pizza drill`` (telemetry.md, "The drill").

They sit beside ``app/`` and are never imported by the service: ``app.cli`` loads them
only when one of their commands runs.
"""
