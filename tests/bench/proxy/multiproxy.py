"""Several proxy processes sharing one port through SO_REUSEPORT (the kernel spreads connections).

Each worker is a full proxy (own event loop, own Kafka producer), configured from the same
environment as ``logorhythms proxy``. Used by the benchmark to show how throughput scales with
processes; production would run the same thing under a supervisor (or one container per core).

    python -m tests.bench.proxy.multiproxy --workers 2
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import signal

from aiohttp import web

from proxy.app import create_app
from proxy.settings import ProxySettings


def serve(settings: ProxySettings) -> None:
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        reuse_port=True,
        access_log=None,
        print=None,
        handler_cancellation=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    settings = ProxySettings.from_env()
    workers = [
        multiprocessing.Process(
            # Every proxy process needs a journal of its own (the journal takes a lock).
            target=serve,
            args=(dataclasses.replace(settings, journal_dir=f"{settings.journal_dir}/{i}"),),
            name=f"proxy-{i}",
        )
        for i in range(args.workers)
    ]
    for worker in workers:
        worker.start()

    def stop(signum: int, frame: object) -> None:
        for worker in workers:
            if worker.pid is not None and worker.is_alive():
                worker.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for worker in workers:
        worker.join()


if __name__ == "__main__":
    main()
