"""Traces, metrics and logs for the service (docs/telemetry.md), plus alerts and dashboard."""
