"""Services that consume the exchange topic: the ClickHouse loader and the Datadog forwarder."""
