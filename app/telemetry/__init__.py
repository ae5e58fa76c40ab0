"""OpenTelemetry for the server: redacted spans and metrics over OTLP/HTTP, off unless configured."""
