"""What an operator sees of the running service: Prometheus metrics and OpenTelemetry traces
(docs/operating.md). Structured logs live in internal/logs.py."""
