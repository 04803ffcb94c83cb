"""Optional integrations built on the hooks (asyncjobs/hooks.py): OpenTelemetry tracing and
metrics (extra `otel`), a Prometheus endpoint (extra `prometheus`), JSON log lines."""
