"""ClinicWatch collector: the central service that validates what clinics report, stores it in
InfluxDB, keeps each clinic's state, groups outages and alerts health administrators."""

__version__ = "0.1.0"
