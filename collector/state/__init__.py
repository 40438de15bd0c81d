"""Clinic state: per-clinic state machines, causes, flap damping, incidents, outage records and SLA
arithmetic (plain logic on a scripted clock), and the service that runs them (docs/collector.md)."""
