"""Image ingestion commands:

    memberflow api             serve the upload API with uvicorn
    memberflow api-key         mint a client's API key: print it once, store only its hash
    memberflow kafka-ingest    land the Kafka image topic outside Dagster (a loop, or one batch with --once)
    memberflow kafka-send      send image files to the topic (to try Kafka ingestion)
    memberflow kafka-broker    run a local Kafka-compatible broker (Tansu, memory only) to try it with

`memberflow start` also serves the API beside `dagster dev` (`start_beside_dagster`); set
MEMBERFLOW_START_API=0 to leave it out.
"""

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from memberflow_assets import postgres
from memberflow_assets.images.ingestion.api_keys import KeyFileError, append_key_line, mint_key
from memberflow_assets.images.ingestion.kafka_ingest import (
    HEADER_CONTENT_TYPE,
    HEADER_EVENT_TIME,
    HEADER_SOURCE,
    open_ingestor,
    plan_ranges,
)
from memberflow_assets.settings import Settings
from memberflow_assets.zones import Zones

log = logging.getLogger("memberflow.images")


def exit_with_parent() -> None:
    """Stop this process when the process that started it is gone (e.g. `dagster dev` was stopped)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _api(args: argparse.Namespace) -> int:
    import uvicorn

    from memberflow_assets.images.ingestion.http_protocol import UVICORN_OPTIONS

    settings = Settings.from_env().ingest
    if args.exit_with_parent:
        exit_with_parent()
    uvicorn.run(
        "memberflow_assets.images.ingestion.api:create_app",
        factory=True,
        host=args.host or settings.api_host,
        port=args.port or settings.api_port,
        workers=args.workers,
        access_log=not args.no_access_log,
        **UVICORN_OPTIONS,
    )
    return 0


def _api_key(args: argparse.Namespace) -> int:
    settings = Settings.from_env().ingest
    try:
        key, line = mint_key(args.client)
    except KeyFileError as error:
        print(error, file=sys.stderr)
        return 2
    if args.print_only:
        print(f"key:  {key}\nline: {line}    (add it to MEMBERFLOW_API_KEYS or the keys file)")
        return 0
    append_key_line(settings.api_keys_file, line)
    print(key)
    print(
        f"client {args.client!r}: key hash added to {settings.api_keys_file}; the key is shown only now",
        file=sys.stderr,
    )
    return 0


def _kafka_ingest(args: argparse.Namespace) -> int:
    configured = Settings.from_env()
    settings, bootstrap = configured.ingest, configured.kafka_bootstrap
    if not bootstrap:
        print("MEMBERFLOW_KAFKA_BOOTSTRAP is not set", file=sys.stderr)
        return 2
    topic = args.topic or settings.kafka_topic
    # Stopping at any moment is safe: a batch not committed yet is delivered again and lands nothing twice.
    with open_ingestor(
        bootstrap,
        Zones.from_settings(configured),
        postgres.require_migrated(postgres.sales_dsn(configured)),
        settings,
        topic,
        settings.kafka_group,
        settings.kafka_dlq_topic,
    ) as ingestor:
        while True:
            ranges = plan_ranges(ingestor.consumer, topic, args.max_messages or settings.kafka_batch_max_messages)
            if ranges:
                stats = ingestor.ingest(ranges)
                log.info(
                    "batch %s: landed %d, duplicates %d, quarantined %d %s",
                    [(r.partition, r.start, r.end) for r in ranges],
                    stats.landed,
                    stats.duplicates,
                    stats.quarantined,
                    dict(stats.reasons),
                )
            if args.once:
                return 0
            if not ranges:
                time.sleep(args.poll_seconds)


def _kafka_send(args: argparse.Namespace) -> int:
    from confluent_kafka import Producer

    configured = Settings.from_env()
    settings, bootstrap = configured.ingest, configured.kafka_bootstrap
    if not bootstrap:
        print("MEMBERFLOW_KAFKA_BOOTSTRAP is not set", file=sys.stderr)
        return 2
    producer = Producer(
        {**settings.kafka_client_config(bootstrap), "enable.idempotence": True, "message.max.bytes": 32 << 20}
    )
    topic = args.topic or settings.kafka_topic
    for name in args.files:
        path = Path(name)
        producer.produce(
            topic,
            value=path.read_bytes(),
            key=path.stem.encode(),
            headers=[
                (HEADER_CONTENT_TYPE, b"application/octet-stream"),
                (HEADER_SOURCE, args.source_application.encode()),
                (HEADER_EVENT_TIME, datetime.now(UTC).isoformat().encode()),
            ],
        )
        producer.poll(0)
    left = producer.flush(30)
    print(f"sent {len(args.files) - left} file(s) to {topic}")
    return 0 if left == 0 else 1


def _kafka_broker(args: argparse.Namespace) -> int:
    from memberflow_assets.images.ingestion.dev_broker import broker_command

    command = broker_command(args.port)
    print(
        f"Tansu broker on 127.0.0.1:{args.port} (memory only): export MEMBERFLOW_KAFKA_BOOTSTRAP=127.0.0.1:{args.port}"
    )
    sys.stdout.flush()
    os.execv(command[0], command)
    return 0  # not reached


def start_beside_dagster(environment: dict[str, str]) -> None:
    """Called by `memberflow start` before it becomes `dagster dev`: serve the upload API beside it."""
    settings = Settings.from_env()
    if not settings.start_api:
        return
    command = [sys.executable, "-m", "memberflow_assets.cli", "api", "--exit-with-parent"]
    subprocess.Popen(command, env={**os.environ, **environment})
    log.info(
        "upload API on http://%s:%s (OpenAPI: /docs). Mint a key: .venv/bin/memberflow api-key --client me",
        settings.ingest.api_host,
        settings.ingest.api_port,
    )


def register(subparsers) -> None:
    api = subparsers.add_parser("api", help="serve the image upload API (uvicorn)")
    api.add_argument("--host", help="default MEMBERFLOW_API_HOST or 127.0.0.1")
    api.add_argument("--port", type=int, help="default MEMBERFLOW_API_PORT or 8000")
    api.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    api.add_argument("--no-access-log", action="store_true")
    api.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    api.set_defaults(handler=_api)

    key = subparsers.add_parser("api-key", help="mint an API key for a client (only its hash is stored)")
    key.add_argument("--client", required=True, help="the client's name, recorded with each of its images")
    key.add_argument("--print-only", action="store_true", help="print the key and its hash line; store nothing")
    key.set_defaults(handler=_api_key)

    ingest = subparsers.add_parser("kafka-ingest", help="land the Kafka image topic (outside Dagster)")
    ingest.add_argument("--once", action="store_true", help="one batch, then exit")
    ingest.add_argument("--topic", help="default MEMBERFLOW_KAFKA_TOPIC or images.uploads")
    ingest.add_argument("--max-messages", type=int, help="per partition and batch")
    ingest.add_argument("--poll-seconds", type=float, default=2.0, help="wait when the topic has nothing new")
    ingest.set_defaults(handler=_kafka_ingest)

    send = subparsers.add_parser("kafka-send", help="send image files to the Kafka image topic")
    send.add_argument("files", nargs="+")
    send.add_argument("--topic")
    send.add_argument("--source-application", default="memberflow-cli")
    send.set_defaults(handler=_kafka_send)

    broker = subparsers.add_parser("kafka-broker", help="run a local Kafka-compatible broker (Tansu) for trying")
    broker.add_argument("--port", type=int, default=9092)
    broker.set_defaults(handler=_kafka_broker)
