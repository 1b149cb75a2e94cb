"""Tools that run the service as a process and measure it: ``pizza bench``
(the performance targets) and ``pizza drill`` (an incident replayed, docs/telemetry.md).

They sit beside ``app/`` and are never imported by the service: ``app.cli`` loads them
only when one of their commands runs.
"""
