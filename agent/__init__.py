"""ClinicWatch agent: runs on a clinic's router or edge box, measures the link and local devices,
keeps every measurement in a durable outbox and reports it over MQTT (wire contract v1)."""

__version__ = "0.1.0"
