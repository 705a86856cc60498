"""Alerts: what is worth telling a person (events.py), how to tell them (notifiers.py).

`notifiers` and `events` import no Dagster, so they can be used and tested on their own;
`resource` (the typed settings) and `sensors` (when to send) are the Dagster side. docs/ALERTS.md.
"""
