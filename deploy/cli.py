"""The `logorhythms` command: one entry point for every service and tool."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence

from deploy.export_cli import add_export_commands
from deploy.kafkalog import summarise_kafka_client_logs


def _proxy(args: argparse.Namespace) -> int:
    from proxy.settings import ProxySettings, parse_workers
    from proxy.supervisor import main

    settings = ProxySettings.from_env()
    overrides: dict[str, object] = {
        k: v for k, v in {"host": args.host, "port": args.port}.items() if v is not None
    }
    if args.workers is not None:
        overrides["workers"] = parse_workers(args.workers, "--workers")
    return main(dataclasses.replace(settings, **overrides))  # type: ignore[arg-type]


def _load_clickhouse(args: argparse.Namespace) -> int:
    from consumers.clickhouse.loader import main

    main()
    return 0


def _forward_datadog(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    from urllib.parse import urlsplit

    from consumers.datadog.llmobs import prepare_environment

    prepare_environment()  # before anything imports ddtrace
    from consumers.settings import ForwarderSettings, SettingsError

    # Before ddtrace is imported: it reads some of the same variables and says so on its own.
    settings = ForwarderSettings.from_env()
    try:
        url = urlsplit(os.environ.get("DD_TRACE_AGENT_URL", ""))
        host = url.hostname or os.environ.get("DD_AGENT_HOST") or "localhost"
        port = url.port or int(os.environ.get("DD_TRACE_AGENT_PORT") or 8126)
    except ValueError:
        raise SettingsError(
            "DD_TRACE_AGENT_URL or DD_TRACE_AGENT_PORT does not give a port number; "
            "set DD_TRACE_AGENT_URL=http://HOST:PORT"
        ) from None
    from consumers.datadog.forwarder import run_forwarder

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(run_forwarder(settings, trace_agent=(host, port)))
    return 0


def _sql(args: argparse.Namespace) -> int:
    from consumers.clickhouse import sqlclient
    from consumers.settings import LoaderSettings

    settings = LoaderSettings.from_env()
    host = settings.sql.host
    if host in {"0.0.0.0", "::"}:  # noqa: S104 (listening everywhere: ask it locally)
        host = "127.0.0.1"
    endpoint = os.environ.get("LOGORHYTHMS_SQL_URL", f"http://{host}:{settings.sql.port}")
    query = args.query if args.query != "-" else sys.stdin.read()
    return sqlclient.run(
        query,
        clickhouse_url=settings.clickhouse_url,
        sql_endpoint=endpoint,
        fmt=args.format,
        user=settings.sql.user,
        password=os.environ.get("LOGORHYTHMS_SQL_PASSWORD"),
    )


def _migrate(args: argparse.Namespace) -> int:
    import asyncio

    from deploy.clustermigration import migrate

    return asyncio.run(
        migrate(
            cluster=args.cluster,
            clickhouse_url=os.environ.get("CLICKHOUSE_URL", ""),
            print_only=args.print_only,
        )
    )


def _up(args: argparse.Namespace) -> int:
    from deploy.local.stack import up

    return up(data_dir=args.data_dir, brokers=args.brokers)


def _status(args: argparse.Namespace) -> int:
    from pathlib import Path

    from deploy.local.status import render_status

    code, text = render_status(Path(args.data_dir).resolve())
    print(text)
    return code


def _fake_upstream(args: argparse.Namespace) -> int:
    from aiohttp import web

    from deploy.local.fake_upstream import create_fake_upstream

    print(f"fake OpenAI/Anthropic upstream on http://{args.host}:{args.port}", flush=True)
    web.run_app(create_fake_upstream(), host=args.host, port=args.port, access_log=None, print=None)
    return 0


def _broker_count(text: str) -> int:
    if text not in ("1", "3"):
        raise argparse.ArgumentTypeError(
            f"{text!r}: run 1 broker, or 3 for a replicated cluster (a write needs 2 replicas "
            "in sync, so 3 nodes are the smallest cluster that survives losing one)"
        )
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="logorhythms",
        description="Logorhythms: a drop-in LLM API endpoint that captures every exchange.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser(
        "up",
        help="run the whole pipeline locally (Kafka, proxy, loader, embedded ClickHouse)",
        description="Start a local Kafka broker, the proxy and the ClickHouse loader; "
        "Ctrl-C stops them all. With no OPENAI_API_KEY set, a built-in fake upstream answers.",
    )
    up.add_argument("--data-dir", default="data", help="where Kafka and ClickHouse keep data")
    up.add_argument(
        "--brokers",
        type=_broker_count,
        default=1,
        help="Kafka nodes to run: 1 (default) or 3, a replicated cluster (replication factor 3, "
        "min.insync.replicas=2) on LOGORHYTHMS_KAFKA_PORT and the next five ports",
    )
    up.set_defaults(func=_up)

    status = commands.add_parser(
        "status",
        help="show the health of each part of a running `logorhythms up`",
        description="Each service's state (up, starting, restarting, stopped), pid, restarts, "
        "ports and how it last ended, from the status file `up` keeps in its data dir. Exit "
        "status 0 when all are up, 1 when a part is not, 3 when `up` is not running.",
    )
    status.add_argument("--data-dir", default="data", help="the data dir `up` was given")
    status.set_defaults(func=_status)

    proxy = commands.add_parser(
        "proxy",
        help="run the capture proxy",
        description="Serve the OpenAI/Anthropic-compatible API and publish every exchange to "
        "Kafka. Configured by the TOML file named by LOGORHYTHMS_CONFIG (see "
        "deploy/config.example.toml), OPENAI_BASE_URL, OPENAI_API_KEY, ANTHROPIC_BASE_URL, "
        "ANTHROPIC_API_KEY, KAFKA_BOOTSTRAP_SERVERS, LOGORHYTHMS_PORT; see docs/CLIENTS.md.",
    )
    proxy.add_argument("--host", help="address to listen on (default LOGORHYTHMS_HOST)")
    proxy.add_argument("--port", type=int, help="port to listen on (default LOGORHYTHMS_PORT)")
    proxy.add_argument(
        "--workers",
        help="proxy processes sharing the port, a number or 'auto' for one per usable CPU "
        "(default LOGORHYTHMS_WORKERS, else 1); see docs/OPERATIONS.md#processes",
    )
    proxy.set_defaults(func=_proxy)

    load = commands.add_parser(
        "load-clickhouse",
        help="run the ClickHouse loader",
        description="Consume the exchange topic into ClickHouse (CLICKHOUSE_URL; default the "
        "embedded engine under ./data/clickhouse) and serve read-only SQL when embedded.",
    )
    load.set_defaults(func=_load_clickhouse)

    forward = commands.add_parser(
        "forward-datadog",
        help="run the Datadog forwarder (metrics + LLM Observability)",
        description="Consume the exchange topic in its own group (LOGORHYTHMS_DATADOG_GROUP, "
        "default logorhythms-datadog) and send DogStatsD metrics (DD_AGENT_HOST, "
        "DD_DOGSTATSD_PORT) and one LLM Observability span per exchange to the Datadog agent "
        "(DD_TRACE_AGENT_URL or DD_AGENT_HOST). Keeps running without an agent.",
    )
    forward.set_defaults(func=_forward_datadog)

    migrate = commands.add_parser(
        "migrate",
        help="apply the ClickHouse schema to a server cluster (replicated, sharded)",
        description="Apply the migrations the loader would apply, in their cluster form "
        "(Replicated*MergeTree tables <name>_local, Distributed tables <name>, ON CLUSTER), "
        "record each version once, then the loader's and analysts' access "
        "(deploy/clickhouse/loader.sql, analyst.sql). Connects to CLICKHOUSE_URL "
        "(http(s)://admin:PASSWORD@host:8123) as a user allowed to run DDL ON CLUSTER. "
        "See docs/OPERATIONS.md#a-clickhouse-cluster.",
    )
    migrate.add_argument(
        "--cluster",
        required=True,
        help="the cluster's name under <remote_servers> in the server config",
    )
    migrate.add_argument(
        "--print",
        dest="print_only",
        action="store_true",
        help="print the SQL instead of running it (no server needed)",
    )
    migrate.set_defaults(func=_migrate)

    sql = commands.add_parser(
        "sql",
        help="run a read-only SQL query against the captured data",
        description="Print the result of one read-only query. Works while the loader runs.",
    )
    sql.add_argument("query", help="the SQL to run, or - to read it from standard input")
    sql.add_argument(
        "--format",
        default="PrettyCompactMonoBlock",
        help="any ClickHouse output format: CSV, TSVWithNames, JSONEachRow, Vertical, ...",
    )
    sql.set_defaults(func=_sql)

    add_export_commands(commands)

    fake = commands.add_parser(
        "fake-upstream",
        help="run a fake OpenAI- and Anthropic-compatible upstream for trying things offline",
    )
    fake.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default %(default)s)"
    )
    fake.add_argument(
        "--port", type=int, default=8090, help="port to listen on (default %(default)s)"
    )
    fake.set_defaults(func=_fake_upstream)
    return parser


def _configuration_errors() -> tuple[type[Exception], ...]:
    from consumers.settings import SettingsError
    from proxy.errors import ConfigError

    return (ConfigError, SettingsError)


def main(argv: Sequence[str] | None = None) -> None:
    # Everything a service writes (journal, Kafka and ClickHouse data, logs, status) holds
    # prompts, responses or keys: private to the user, whatever the shell's umask says.
    os.umask(0o077)
    summarise_kafka_client_logs()
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:
        if not isinstance(exc, _configuration_errors()):
            raise
        # One line, no traceback: the message names the setting and what to change.
        message = " ".join(str(exc).split())
        print(f"logorhythms {args.command}: configuration error: {message}", file=sys.stderr)
        code = 2
    sys.exit(code)


if __name__ == "__main__":
    main()
