"""A real S3-protocol server on loopback for the s3:// tests (moto's server, like the fake LLM
upstreams), the credentials it is reached with, and a boto3 client of the test's own to look at
the bucket. The fixtures are in ``conftest.py``."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

ACCESS_KEY_ID = "AKIAPLANTEDKEYID0001"
SECRET_KEY = "planted-secret-3f9c1e7a5b2d8c4e6f0a1b3c5d7e9f1a"  # must appear nowhere


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def moto_server(log: Path, **env: str) -> Iterator[str]:
    """moto's S3 server on a free loopback port (``env``: its settings); its log on failure."""
    port = free_port()
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"moto's S3 server did not start: {log.read_text()}")
            time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def s3_client():  # type: ignore[no-untyped-def]
    return boto3.client("s3")  # endpoint, region and credentials from the environment


def bucket_objects(bucket: str) -> dict[str, bytes]:
    """Every object in the bucket, by key."""
    client = s3_client()
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}
