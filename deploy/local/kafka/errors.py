"""The one error of the local Kafka package."""

from __future__ import annotations

__all__ = ["KafkaSetupError"]


class KafkaSetupError(RuntimeError):
    """Kafka could not be fetched, formatted or started; the message says what to do."""
