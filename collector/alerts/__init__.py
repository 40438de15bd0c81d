"""Alerts: who is told what about incidents, when, and through which channel (issue 12, in progress)."""
