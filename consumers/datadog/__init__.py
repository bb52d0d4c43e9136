"""Datadog forwarder: DogStatsD metrics, LLM Observability spans and APM trace context."""
