"""Local, single-machine services (real Kafka broker, ...) for `make up` and the tests."""
