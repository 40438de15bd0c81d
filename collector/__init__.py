"""ClinicWatch collector: the central service that validates what clinics report and stores it in
InfluxDB."""

__version__ = "0.1.0"
