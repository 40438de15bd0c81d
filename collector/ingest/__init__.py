"""Ingest: MQTT intake, validation against the wire contract and the registry, the write pipeline,
the disk spool and the stores (docs/collector.md, Stages)."""
