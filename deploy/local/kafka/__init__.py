"""A real Apache Kafka broker (KRaft), or a cluster of them, run from Python without Docker.

Used by ``logorhythms up`` (``deploy/local/stack.py``), by the test fixtures in
``tests/conftest.py``, and standalone: ``python -m deploy.local.kafka --data-dir ./data/kafka``.

One module per job:

- ``jars``: fetch the broker's class path from Maven Central once, into a locked cache;
- ``java``: find ``java`` and build the broker's JVM command line;
- ``class_data``: the AppCDS archive that shortens JVM start-up;
- ``ports``: free loopback ports; ``properties``: ``server.properties`` and the cluster id;
- ``probe``: the readiness check (a Metadata request that must list a live broker);
- ``broker``: the JVM process (format, start, stop, kill, pause, resume);
- ``cluster``: N such nodes as one replicated cluster (``logorhythms up --brokers 3``);
- ``topics``: create a topic and wait until every partition has a leader; describe leaders
  and in-sync replicas;
- ``__main__``: the command line.
"""

from deploy.local.kafka.broker import KafkaBroker
from deploy.local.kafka.cluster import KafkaCluster
from deploy.local.kafka.errors import KafkaSetupError
from deploy.local.kafka.jars import KAFKA_VERSION, ensure_kafka_jars, kafka_cache_dir
from deploy.local.kafka.ports import HOST, free_ports
from deploy.local.kafka.probe import probe_metadata
from deploy.local.kafka.topics import PartitionState, create_topic, describe_partitions

__all__ = [
    "HOST",
    "KAFKA_VERSION",
    "KafkaBroker",
    "KafkaCluster",
    "KafkaSetupError",
    "PartitionState",
    "create_topic",
    "describe_partitions",
    "ensure_kafka_jars",
    "free_ports",
    "kafka_cache_dir",
    "probe_metadata",
]
