"""One configuration path: Settings read once, the resources as the Dagster UI shows them, the sensors'
intervals, no environment read when a sensor module is imported, and a database nobody migrated."""

import json
import subprocess
import sys
from contextlib import closing

import dagster as dg
import pytest
from dagster._core.remote_representation.external_data import RepositorySnap, ResourceConfigEnvVarSnap
from dagster_shared.serdes import serialize_value

from memberflow_assets import cli, postgres
from memberflow_assets.definitions import build_defs
from memberflow_assets.resources import SalesDatabase
from memberflow_assets.sales.jobs import migrate_sales_database_job
from memberflow_assets.settings import REPO_ROOT, Settings

PASSWORD = "pa55-word-in-the-dsn"
PRODUCTION = {
    "MEMBERFLOW_DATA_DIR": "/srv/memberflow",
    "MEMBERFLOW_STORAGE_URL": "s3://zones-bucket/zones",
    "MEMBERFLOW_S3_ENDPOINT_URL": "https://s3.eu-west-1.amazonaws.com",
    "MEMBERFLOW_PG_DSN": f"postgresql://memberflow:{PASSWORD}@db.internal:5432/memberflow",
    "MEMBERFLOW_WAREHOUSE": "/srv/warehouse/warehouse.duckdb",
    "MEMBERFLOW_KAFKA_BOOTSTRAP": "kafka-1.internal:9094",
    "MEMBERFLOW_KAFKA_TOPIC": "uploads",
    "MEMBERFLOW_KAFKA_GROUP": "memberflow-prod",
    "MEMBERFLOW_KAFKA_DLQ_TOPIC": "uploads.dead",
    "MEMBERFLOW_KAFKA_BATCH_MAX_MESSAGES": "500",
    "MEMBERFLOW_KAFKA_CONFIG": f'{{"security.protocol": "SASL_SSL", "sasl.password": "{PASSWORD}"}}',
    "MEMBERFLOW_MAX_UPLOAD_BYTES": "1000000",
    "MEMBERFLOW_INGEST_DURABLE": "0",
}


def shown_resources(defs: dg.Definitions) -> tuple[dict[str, dict], str]:
    """Each resource's configured values as the UI receives them (the code location's snapshot), and
    the whole snapshot serialised (everything the UI could show)."""
    snapshot = RepositorySnap.from_def(defs.get_repository_def())

    def shown(value) -> object:
        return f"env:{value.name}" if isinstance(value, ResourceConfigEnvVarSnap) else json.loads(value)

    resources = {r.name: {field: shown(v) for field, v in r.configured_values.items()} for r in snapshot.resources}
    return resources, serialize_value(snapshot)


def test_the_ui_shows_each_resources_configuration_and_the_dsn_as_its_variable(clean_env):
    for name, value in PRODUCTION.items():
        clean_env.setenv(name, value)

    shown, everything = shown_resources(build_defs(Settings.from_env()))

    assert shown["zones"] == {
        "root_url": "s3://zones-bucket/zones",
        "s3_endpoint_url": "https://s3.eu-west-1.amazonaws.com",
    }
    assert shown["sales_db"] == {"dsn": "env:MEMBERFLOW_PG_DSN", "embedded_pg_dir": None}
    assert shown["warehouse"] == {"path": "/srv/warehouse/warehouse.duckdb"}
    assert shown["kafka_images"] == {
        "bootstrap": "kafka-1.internal:9094",
        "topic": "uploads",
        "group": "memberflow-prod",
        "dead_letter_topic": "uploads.dead",
        "max_messages_per_partition": 500,
        "max_message_bytes": 1_000_000,
        "max_pixels": 100_000_000,
        "durable": False,
        "client_config": "env:MEMBERFLOW_KAFKA_CONFIG",  # it may hold credentials: shown as its variable
    }
    assert PASSWORD not in everything and "db.internal" not in everything


def test_on_embedded_defaults_the_ui_shows_the_local_folders(clean_env, tmp_path):
    shown, _ = shown_resources(build_defs(Settings.from_env()))

    assert shown["zones"] == {"root_url": str(tmp_path)}  # no S3 endpoint: none is configured
    assert shown["sales_db"] == {"dsn": None, "embedded_pg_dir": str(tmp_path / ".pg")}  # the embedded server
    assert shown["warehouse"] == {"path": str(tmp_path / "warehouse.duckdb")}
    assert shown["kafka_images"] == {"topic": "images.uploads", "group": "memberflow-images",
                                     "max_messages_per_partition": 2000, "max_message_bytes": 20 * 1024 * 1024,
                                     "max_pixels": 100_000_000, "durable": True}  # fmt: skip


def test_sensor_intervals_come_from_the_settings_the_definitions_were_built_with(clean_env):
    def intervals() -> dict[str, int]:
        repository = build_defs(Settings.from_env()).get_repository_def()
        names = ("landing_applications_sensor", "landing_images_sensor", "kafka_images_sensor")
        return {name: repository.get_sensor_def(name).minimum_interval_seconds for name in names}

    assert intervals() == {"landing_applications_sensor": 15, "landing_images_sensor": 15, "kafka_images_sensor": 10}
    clean_env.setenv("MEMBERFLOW_SENSOR_INTERVAL_SECONDS", "7")
    clean_env.setenv("MEMBERFLOW_KAFKA_SENSOR_INTERVAL_SECONDS", "3")
    assert intervals() == {"landing_applications_sensor": 7, "landing_images_sensor": 7, "kafka_images_sensor": 3}


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MEMBERFLOW_SENSOR_INTERVAL_SECONDS", "fifteen", "MEMBERFLOW_SENSOR_INTERVAL_SECONDS must be an integer"),
        ("MEMBERFLOW_API_PORT", "80.5", "MEMBERFLOW_API_PORT must be an integer, not '80.5'"),
        ("MEMBERFLOW_LANDING_SETTLE_SECONDS", "10s", "MEMBERFLOW_LANDING_SETTLE_SECONDS must be a number"),
        ("MEMBERFLOW_KAFKA_CONFIG", "[1]", "MEMBERFLOW_KAFKA_CONFIG must be a JSON object"),
    ],
)
def test_a_malformed_variable_is_named_when_the_settings_are_read(clean_env, name, value, message):
    clean_env.setenv("MEMBERFLOW_KAFKA_BOOTSTRAP", "kafka:9092")  # MEMBERFLOW_KAFKA_CONFIG is read with Kafka on
    clean_env.setenv(name, value)
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("[", r"\[")):
        Settings.from_env()


def test_ingestion_settings_are_part_of_the_one_reading(clean_env, tmp_path):
    clean_env.setenv("MEMBERFLOW_API_PORT", " 9001 ")
    clean_env.setenv("MEMBERFLOW_INGEST_DURABLE", "off")
    clean_env.setenv("MEMBERFLOW_KAFKA_BOOTSTRAP", "kafka:9092")
    clean_env.setenv("MEMBERFLOW_KAFKA_CONFIG", '{"security.protocol": "SSL"}')
    ingest = Settings.from_env().ingest
    assert (ingest.api_port, ingest.durable, ingest.kafka_config) == (9001, False, {"security.protocol": "SSL"})
    assert ingest.api_keys_file == tmp_path / "api_keys.txt"  # beside the data, as before


# Imports every module that defines sensors or a domain's definitions with os.environ replaced by a
# mapping that records which MEMBERFLOW_* names memberflow's own code looks up (get, `in` and [] all
# go through __getitem__; copies of the whole environment, e.g. for a subprocess, are not lookups).
IMPORT_WITH_RECORDED_ENV = """
import collections.abc, json, os, sys

def looked_up_by_memberflow():
    frame = sys._getframe(2)
    while frame and ("_collections_abc" in frame.f_code.co_filename or frame.f_code.co_filename.endswith("os.py")):
        frame = frame.f_back
    return frame is not None and "/memberflow_assets/" in frame.f_code.co_filename

class Recording(collections.abc.MutableMapping):
    def __init__(self, real):
        self.real, self.read = real, []
    def __getitem__(self, name):
        if name.startswith("MEMBERFLOW_") and looked_up_by_memberflow():
            self.read.append(name)
        return self.real[name]
    def __setitem__(self, name, value):
        self.real[name] = value
    def __delitem__(self, name):
        del self.real[name]
    def __iter__(self):
        return iter(self.real)
    def __len__(self):
        return len(self.real)

recording = os.environ = Recording(os.environ)
import memberflow_assets.membership.sensors, memberflow_assets.images.ingestion.sensors
import memberflow_assets.images.processing.sensors, memberflow_assets.sales.sensors
import memberflow_assets.membership.definitions, memberflow_assets.images.definitions
import memberflow_assets.sales.definitions, memberflow_assets.warehouse.definitions
print(json.dumps(recording.read))
"""


def test_importing_sensor_and_domain_modules_reads_no_memberflow_variable(clean_env):
    clean_env.setenv("MEMBERFLOW_SENSOR_INTERVAL_SECONDS", "not read at import")
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_WITH_RECORDED_ENV], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == []


# -- a database nobody migrated ------------------------------------------------------------------
def test_an_unmigrated_database_fails_naming_the_command_until_the_migrate_job_runs(make_database, instance):
    database = SalesDatabase(dsn=make_database())

    with pytest.raises(postgres.SchemaBehindError, match=r"lacks \d+ migration\(s\).*run `memberflow migrate`"):
        database.get_dsn()
    with closing(postgres.connect(database.dsn)) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('public.schema_migrations')")
        assert cursor.fetchone() == (None,)  # the check only read: it created nothing

    defs = dg.Definitions(jobs=[migrate_sales_database_job], resources={"sales_db": database})
    assert defs.resolve_job_def("migrate_sales_database").execute_in_process(instance=instance).success
    with database.connect() as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM sales.members")
        assert cursor.fetchone() == (0,)
    assert postgres.apply_migrations(database.dsn) == []


def test_a_command_on_an_unmigrated_database_says_which_command_to_run(clean_env, make_database, capsys):
    clean_env.setenv("MEMBERFLOW_PG_DSN", make_database())
    assert cli.main(["warehouse", "refresh"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("memberflow warehouse: the sales database lacks") and "`memberflow migrate`" in error
    assert cli.main(["migrate"]) == 0
    assert "applied: 0001_members.sql" in capsys.readouterr().out
