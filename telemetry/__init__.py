"""Traces, metrics and logs for the service (telemetry.md), plus alerts and dashboard."""
