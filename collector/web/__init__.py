"""What the collector serves over HTTP: Prometheus metrics and the state API (docs/collector.md)."""
