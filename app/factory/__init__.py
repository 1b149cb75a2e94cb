"""The factory as operators see it: its answers' facts, the chaos it reports, the
remediation link, the probe and the history of events (ops.py, chaos.py,
links.py). The HTTP client that talks to the factory is clients/client.py."""

from app.factory.ops import FactoryOps

__all__ = ["FactoryOps"]
