"""Factory incidents: the service's own record of each factory outage.

See docs/resilience.md#incidents.

- recorder.py: opens, joins, reopens and closes incidents from the factory events
  (`IncidentRecorder.on_event`, fed by FactoryOps), and pages through webhook.py.
- view.py: an incident as people read it: its timeline and its impact, from the database.
- report.py: the postmortem draft of one incident, in Markdown (`pizza incident report`).
- webhook.py: the direct page, POSTed to ALERT_WEBHOOK_URL off the order path.

Their HTTP surface is app/routes/incidents.py. What the rest of the service needs is
named here: the recorder, and the conditions it is told about.
"""

from app.incidents.recorder import IncidentRecorder, create_recorder
from app.incidents.signs import Conditions

__all__ = ["Conditions", "IncidentRecorder", "create_recorder"]
