"""The capture proxy: forwards LLM API calls upstream and publishes every step to Kafka."""
