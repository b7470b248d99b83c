"""Configuration the platform refuses, and how: a clear error naming the variable, never a secret of it
(not even in the chained exception Dagster's event log shows), one line from a `memberflow` command;
and the values it cleans up rather than refuses (whitespace, relative paths, file:// URLs)."""

import traceback

import dagster as dg
import psycopg2
import pytest

from memberflow_assets import cli, postgres
from memberflow_assets.definitions import build_defs
from memberflow_assets.resources import SalesDatabase
from memberflow_assets.sales.jobs import migrate_sales_database_job
from memberflow_assets.settings import ConfigurationError, Settings

SECRET = "Sup3rSecretPW"
# each makes libpq's parser quote a part of it, the password included
UNPARSABLE_DSNS = [
    f"postgresql://alice:{SECRET[:5]}%ZZ{SECRET[5:]}@localhost/x",  # a % not percent-encoding anything
    f"postgresql:/ /postgres:{SECRET}@localhost/x",  # not a URL: read as key=value, quoted whole
    f"host=localhost password=Sup3r {SECRET}",  # key=value with an unquoted space
]


def _everything_shown(error: BaseException) -> str:
    """What a traceback of `error` prints: its message and every chained exception's."""
    return "".join(traceback.format_exception(error))


@pytest.mark.parametrize("dsn", UNPARSABLE_DSNS)
def test_an_unparsable_dsn_is_refused_naming_the_variable_not_quoting_it(dsn):
    for opening in (
        lambda: postgres.connect(dsn),
        lambda: postgres.ConnectionPool(dsn, 1).connection().__enter__(),
        lambda: SalesDatabase(dsn=dsn).connect().__enter__(),
        lambda: postgres.ensure_database(dsn, "x"),
    ):
        with pytest.raises(postgres.InvalidDsnError, match="MEMBERFLOW_PG_DSN is not a valid PostgreSQL DSN") as info:
            opening()
        shown = _everything_shown(info.value)
        assert SECRET not in shown and SECRET[5:] not in shown
        assert info.value.__cause__ is None and info.value.__context__ is None  # no chained original at all


def test_dagsters_event_log_shows_no_part_of_an_unparsable_dsn(monkeypatch, instance):
    monkeypatch.setenv("MEMBERFLOW_PG_DSN", UNPARSABLE_DSNS[0])
    defs = dg.Definitions(
        jobs=[migrate_sales_database_job], resources={"sales_db": SalesDatabase(dsn=dg.EnvVar("MEMBERFLOW_PG_DSN"))}
    )
    result = defs.resolve_job_def("migrate_sales_database").execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    logged = "\n".join(str(record) for record in instance.all_logs(result.run_id))
    assert "MEMBERFLOW_PG_DSN is not a valid PostgreSQL DSN" in logged
    assert SECRET[5:] not in logged and "ZZ" not in logged


def test_a_refused_login_names_no_password(pg_server_uri):
    # the test server asks every role but postgres for its SCRAM password
    dsn = postgres.with_database(pg_server_uri, "postgres").replace("postgres:@", f"nobody:{SECRET}@", 1)
    with pytest.raises(postgres.ConnectionFailedError, match="could not connect to PostgreSQL") as info:
        postgres.connect(dsn)
    assert isinstance(info.value, psycopg2.OperationalError)  # still what callers catch
    assert SECRET not in _everything_shown(info.value)


def test_libpq_messages_lose_any_password_they_quote():
    dsn = f"postgresql://alice:{SECRET}%21@db/x"
    assert postgres.redact_dsn(f'bad "{SECRET}!" and {dsn}', dsn) == 'bad "***" and ***'


def test_a_trailing_newline_of_the_dsn_variable_is_ignored(make_database, instance, monkeypatch):
    # a Kubernetes Secret's value usually ends in one; dg.EnvVar resolves it raw
    monkeypatch.setenv("MEMBERFLOW_PG_DSN", make_database() + "\n")
    defs = dg.Definitions(
        jobs=[migrate_sales_database_job], resources={"sales_db": SalesDatabase(dsn=dg.EnvVar("MEMBERFLOW_PG_DSN"))}
    )
    assert defs.resolve_job_def("migrate_sales_database").execute_in_process(instance=instance).success


# -- settings ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url", ["S3://bucket/zones", "s3:/bucket/zones", "gs://bucket/zones", "s3a://bucket/zones", "s3://", "s3://B/x",
            "s3://bucket//zones", "file://host/srv/zones", "file:relative"],
)  # fmt: skip
def test_a_storage_url_that_is_neither_s3_nor_a_folder_is_refused(clean_env, url):
    clean_env.setenv("MEMBERFLOW_STORAGE_URL", url)
    with pytest.raises(ConfigurationError, match="MEMBERFLOW_STORAGE_URL"):
        Settings.from_env()


@pytest.mark.parametrize(
    ("url", "zones"),
    [("s3://bucket/zones", "s3://bucket/zones"), ("s3://my.bucket-1", "s3://my.bucket-1"),
     ("s3://bucket/a/b/", "s3://bucket/a/b"), ("file:///srv/my%20zones", "/srv/my zones"),
     ("/srv/zones", "/srv/zones")],
)  # fmt: skip
def test_accepted_storage_urls(clean_env, url, zones):
    clean_env.setenv("MEMBERFLOW_STORAGE_URL", url)
    assert Settings.from_env().zones_url == zones


def test_relative_paths_are_made_absolute_when_the_settings_are_read(clean_env, tmp_path):
    # `memberflow start` changes folder before `dagster dev`: every process must mean the same folders
    clean_env.chdir(tmp_path)
    clean_env.setenv("MEMBERFLOW_DATA_DIR", "data")
    clean_env.setenv("MEMBERFLOW_WAREHOUSE", "bi/warehouse.duckdb")
    clean_env.setenv("MEMBERFLOW_STORAGE_URL", "zones")
    clean_env.setenv("MEMBERFLOW_API_KEYS_FILE", "keys.txt")
    settings = Settings.from_env()
    clean_env.chdir("/")
    assert settings.data_dir == tmp_path / "data"
    assert settings.warehouse == str(tmp_path / "bi" / "warehouse.duckdb")
    assert settings.zones_url == str(tmp_path / "zones")
    assert settings.ingest.api_keys_file == tmp_path / "keys.txt"


def test_memberflow_env_exports_the_absolute_paths(clean_env, tmp_path, make_database, capsys):
    clean_env.chdir(tmp_path)
    clean_env.setenv("MEMBERFLOW_DATA_DIR", "data")
    clean_env.setenv("MEMBERFLOW_WAREHOUSE", "warehouse.duckdb")
    clean_env.setenv("MEMBERFLOW_STORAGE_URL", "zones")
    clean_env.setenv("MEMBERFLOW_PG_DSN", make_database())
    clean_env.setenv("MEMBERFLOW_DAGSTER_PG_DSN", "postgresql://dagster@db/dagster")
    clean_env.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    assert cli.main(["env"]) == 0
    exported = dict(line.removeprefix("export ").split("=", 1) for line in capsys.readouterr().out.splitlines())
    assert exported["MEMBERFLOW_DATA_DIR"] == str(tmp_path / "data")
    assert exported["MEMBERFLOW_WAREHOUSE"] == str(tmp_path / "warehouse.duckdb")
    assert exported["MEMBERFLOW_STORAGE_URL"] == str(tmp_path / "zones")
    assert exported["MEMBERFLOW_API_KEYS_FILE"] == str(tmp_path / "data" / "api_keys.txt")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MEMBERFLOW_MAX_UPLOAD_BYTES", "0", "between 1024 and"),  # every image was too_large
        ("MEMBERFLOW_KAFKA_BATCH_MAX_MESSAGES", "0", "between 1 and 1e\\+06"),  # kafka-ingest busy-looped
        ("MEMBERFLOW_API_PORT", "99999", "between 1 and 65535"),
        ("MEMBERFLOW_ANALYTICS_PORT", "0", "between 1 and 65535"),
        ("MEMBERFLOW_SENSOR_INTERVAL_SECONDS", "0", "between 1 and 86400"),
        ("MEMBERFLOW_KAFKA_SENSOR_INTERVAL_SECONDS", "-5", "between 1 and 86400"),
        ("MEMBERFLOW_MAX_CONCURRENT_RUNS", "0", "between 1 and 1000"),  # no run ever launched
        ("MEMBERFLOW_MAX_CONCURRENT_RUNS", "-1", "between 1 and 1000"),
        ("MEMBERFLOW_LANDING_SETTLE_SECONDS", "-1", "between 0 and 86400"),
        ("MEMBERFLOW_LANDING_SETTLE_SECONDS", "nan", "between 0 and 86400"),
        ("MEMBERFLOW_IMAGES_RUN_INTERVAL_SECONDS", "inf", "between 0 and 86400"),
        ("MEMBERFLOW_API_HEADER_TIMEOUT_SECONDS", "0", "between 0.1 and 3600"),
        ("MEMBERFLOW_API_MAX_BODIES", "0", "between 1 and"),
        ("MEMBERFLOW_MAX_IMAGE_PIXELS", "0", "between 1 and"),
        ("MEMBERFLOW_ANALYTICS_CHECK_EVERY", "soon", 'a duration such as "30s"'),  # silently became 30 s
        ("MEMBERFLOW_ANALYTICS_CHECK_EVERY", "0s", "between 0.1 s and 86400 s"),
        ("MEMBERFLOW_START_API", "nope", "must be one of 1, true, yes, on / 0, false, no, off"),  # started the API
        ("MEMBERFLOW_SALES_DEMO", "maybe", "must be one of"),
        ("MEMBERFLOW_INGEST_DURABLE", "2", "must be one of"),
    ],
)
def test_out_of_range_numbers_and_unknown_flags_are_refused_naming_the_variable(clean_env, name, value, message):
    clean_env.setenv(name, value)
    with pytest.raises(ConfigurationError, match=f"^{name} .*{message}"):
        Settings.from_env()


@pytest.mark.parametrize(("value", "on"), [("1", True), ("TRUE", True), (" yes ", True), ("On", True),
                                           ("0", False), ("false", False), ("No", False), ("OFF", False)])  # fmt: skip
def test_flags_accept_the_usual_spellings(clean_env, value, on):
    clean_env.setenv("MEMBERFLOW_SALES_DEMO", value)  # only "1" switched the demo on
    clean_env.setenv("MEMBERFLOW_START_API", value)
    settings = Settings.from_env()
    assert (settings.sales_demo, settings.start_api) == (on, on)


def test_malformed_kafka_config_is_named_with_its_position_never_quoted(clean_env):
    clean_env.setenv("MEMBERFLOW_KAFKA_CONFIG", f'{{"sasl.password": "{SECRET}" "sasl.username": "u"}}')
    clean_env.setenv("MEMBERFLOW_KAFKA_BOOTSTRAP", "kafka:9092")
    expected = r"MEMBERFLOW_KAFKA_CONFIG is not valid JSON \(.* line 1, column 35\)"
    with pytest.raises(ConfigurationError, match=expected) as info:
        Settings.from_env()
    assert SECRET not in _everything_shown(info.value)


def test_without_kafka_its_config_is_not_read_and_the_code_location_loads(clean_env):
    clean_env.setenv("MEMBERFLOW_KAFKA_CONFIG", "{not json")
    settings = Settings.from_env()
    assert settings.ingest.kafka_config == {}
    build_defs(settings).get_repository_def()


# -- the command line -------------------------------------------------------------------------------
def _one_line_error(capsys, argv: list[str], command: str) -> str:
    assert cli.main(argv) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"memberflow {command}: ") and error.count("\n") == 1 and "Traceback" not in error
    return error


def test_commands_print_configuration_errors_as_one_line(clean_env, capsys, tmp_path):
    clean_env.setenv("MEMBERFLOW_API_PORT", "99999")
    assert "MEMBERFLOW_API_PORT must be between 1 and 65535" in _one_line_error(capsys, ["migrate"], "migrate")
    clean_env.delenv("MEMBERFLOW_API_PORT")

    clean_env.setenv("MEMBERFLOW_PG_DSN", UNPARSABLE_DSNS[0])
    error = _one_line_error(capsys, ["warehouse", "refresh"], "warehouse")
    assert "MEMBERFLOW_PG_DSN is not a valid PostgreSQL DSN" in error and "ZZ" not in error

    clean_env.setenv("MEMBERFLOW_PG_DSN", f"postgresql://alice:{SECRET}@127.0.0.1:1/x")  # nobody listens there
    error = _one_line_error(capsys, ["migrate"], "migrate")
    assert "could not connect to PostgreSQL" in error and SECRET not in error

    clean_env.setenv("MEMBERFLOW_PG_DSN", f"postgresql://alice:{SECRET}@localhost/x?sslmode=bogus")
    assert 'invalid sslmode value: "bogus"' in _one_line_error(capsys, ["migrate"], "migrate")

    data_file = tmp_path / "a-file"
    data_file.write_text("")
    clean_env.setenv("MEMBERFLOW_DATA_DIR", str(data_file))
    assert _one_line_error(capsys, ["env"], "env") == f"memberflow env: File exists: {data_file}\n"


def test_a_bug_keeps_its_traceback(clean_env, monkeypatch):
    def broken(settings):
        raise KeyError("a bug")

    monkeypatch.setattr("memberflow_assets.cli.platform.prepare_environment", broken)
    with pytest.raises(KeyError):
        cli.main(["env"])
