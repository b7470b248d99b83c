"""What the Dagster UI shows of the loaded definitions: descriptions that render as written, and the
assets shown as overdue when they are (evaluated by Dagster's own freshness daemon), and the column
schemas of the table-like assets, compared with what the assets write."""

import hashlib
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
from dagster._core.definitions.freshness import FreshnessState
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.test_utils import InProcessTestWorkspaceLoadTarget, freeze_time
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._daemon.freshness import FreshnessDaemon

from memberflow_assets import definitions
from memberflow_assets.column_schemas import COLUMN_SCHEMA
from memberflow_assets.definitions import defs
from memberflow_assets.domains import DOMAIN_TAG
from memberflow_assets.images import layout
from memberflow_assets.images.layout import hour_key, hour_start
from memberflow_assets.images.processing import hour_partition
from memberflow_assets.settings import REPO_ROOT
from memberflow_assets.testing.images import jpeg
from memberflow_assets.warehouse import versions
from memberflow_assets_tests.helpers import HEADER, land, run_batch
from memberflow_assets_tests.images.helpers import land_image

# Markdown passes `<word ...>` through as an HTML tag, which the UI drops ("members/successful/.parquet").
# Inside a code span it is shown literally.
TAG_LIKE = re.compile(r"</?[A-Za-z][\w-]*[^<>]*>")
CODE_SPAN = re.compile(r"`[^`]*`")


def shown_descriptions() -> dict[str, str]:
    """Every description the UI renders: assets, checks, jobs and their ops, sensors, schedules, resources."""
    repository = defs.get_repository_def()
    graph = repository.asset_graph
    shown = {f"asset {key.to_user_string()}": graph.get(key).description for key in graph.get_all_asset_keys()}
    shown |= {f"check {key.name}": graph.get_check_spec(key).description for key in graph.asset_check_keys}
    for job in repository.get_all_jobs():
        shown[f"job {job.name}"] = job.description
        shown |= {f"op {node.name}": node.description for node in job.graph.node_defs}
    shown |= {f"sensor {sensor.name}": sensor.description for sensor in repository.sensor_defs}
    shown |= {f"schedule {schedule.name}": schedule.description for schedule in repository.schedule_defs}
    shown |= {f"resource {name}": r.description for name, r in repository.get_top_level_resources().items()}
    return {name: text for name, text in shown.items() if text}


def test_the_walk_sees_every_kind_of_definition():
    kinds = {name.split(" ", 1)[0] for name in shown_descriptions()}
    assert {"asset", "check", "job", "op", "sensor", "schedule"} <= kinds


def test_no_description_has_a_placeholder_the_ui_would_eat_as_html():
    eaten = {name: TAG_LIKE.findall(CODE_SPAN.sub("", text)) for name, text in shown_descriptions().items()}
    assert {name: tags for name, tags in eaten.items() if tags} == {}


@pytest.mark.parametrize(
    ("text", "eaten"),
    [
        ("images/metadata/<hour>.parquet", ["<hour>"]),
        ("`images/metadata/<hour>.parquet`", []),
        ("format <last_name>_<5 hex>", ["<last_name>"]),
        ("at most 256 px, 1 < 2 and 3 > 2", []),
    ],
)
def test_the_placeholder_rule(text, eaten):
    assert TAG_LIKE.findall(CODE_SPAN.sub("", text)) == eaten


# -- freshness: what the UI shows as overdue ---------------------------------------------------------
WAREHOUSE_TABLES = ("dim_member", "dim_item", "dim_date", "fact_sales", "fact_transactions", "application_outcomes")


def evaluate_freshness(instance: dg.DagsterInstance) -> dict[str, FreshnessState]:
    """One iteration of Dagster's freshness daemon (run by `dagster dev`) over the loaded code location."""
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(python_file=definitions.__file__, attribute="defs", working_directory=str(REPO_ROOT))
    )
    with WorkspaceProcessContext(instance, InProcessTestWorkspaceLoadTarget(origin)) as workspace:
        list(FreshnessDaemon().run_iteration(workspace))
    keys = [dg.AssetKey(name) for name in (*WAREHOUSE_TABLES, "bi_views", "image_retention_audit")]
    records = instance.get_freshness_state_records(keys)
    return {key.to_user_string(): records[key].freshness_state for key in keys if key in records}


def report_materializations(instance: dg.DagsterInstance, names: tuple[str, ...], at: datetime) -> None:
    with freeze_time(at):
        for name in names:
            instance.report_runless_asset_event(dg.AssetMaterialization(name))


def test_warehouse_and_retention_declare_their_freshness():
    graph = defs.get_repository_def().asset_graph
    windows = {
        key.to_user_string(): graph.get(key).freshness_policy.fail_window.to_timedelta()
        for key in graph.get_all_asset_keys()
        if graph.get(key).freshness_policy is not None
    }
    assert windows == {
        **{name: timedelta(minutes=30) for name in (*WAREHOUSE_TABLES, "bi_views")},
        "image_retention_audit": timedelta(hours=2),
    }


def test_an_overdue_warehouse_or_purge_shows_as_failing_and_recovers(instance):
    now = datetime.now(UTC)
    report_materializations(instance, (*WAREHOUSE_TABLES, "bi_views"), now - timedelta(minutes=31))
    report_materializations(instance, ("image_retention_audit",), now - timedelta(hours=2, minutes=1))
    states = evaluate_freshness(instance)
    assert len(states) == len(WAREHOUSE_TABLES) + 2 and set(states.values()) == {FreshnessState.FAIL}

    report_materializations(instance, (*WAREHOUSE_TABLES, "bi_views"), now - timedelta(minutes=1))
    report_materializations(instance, ("image_retention_audit",), now - timedelta(minutes=70))  # hourly: on time
    states = evaluate_freshness(instance)
    assert len(states) == len(WAREHOUSE_TABLES) + 2 and set(states.values()) == {FreshnessState.PASS}


# -- column schemas: the UI lists each table's columns and types ------------------------------------
TABLE_KINDS = {"parquet", "duckdb", "postgres", "csv"}
NOT_ONE_TABLE = {  # table-like kinds, but several tables or views under one asset: no single column list
    "bi_views",  # five views in schema bi
    "image_bi_views",  # five views in schema bi
    "image_retention_audit",  # images.retention_runs and images.retention_purges
    "sales_demo_data",  # rows in the catalogue and transaction tables
    "sales_database",  # the whole operational schema, written outside Dagster
}


def column_schema(asset: str) -> dg.TableSchema | None:
    schema = defs.get_repository_def().asset_graph.get(dg.AssetKey(asset)).metadata.get(COLUMN_SCHEMA)
    return getattr(schema, "schema", schema)  # a TableSchemaMetadataValue or the TableSchema itself


def columns(schema: dg.TableSchema) -> list[tuple[str, str]]:
    return [(column.name, column.type) for column in schema.columns]


def test_every_table_like_asset_lists_its_columns():
    graph = defs.get_repository_def().asset_graph
    table_like = {
        key.to_user_string() for key in graph.get_all_asset_keys() if graph.get(key).kinds & TABLE_KINDS
    } - NOT_ONE_TABLE
    missing = {asset for asset in table_like if not column_schema(asset)}
    assert table_like and missing == set()
    assert all(columns(column_schema(asset)) for asset in table_like)


def test_warehouse_column_schemas_are_the_published_tables(tmp_path):
    warehouse = str(tmp_path / "warehouse.duckdb")
    versions.republish_views(warehouse, None)  # a version as the one writer publishes it
    with versions.open_published(warehouse) as connection:
        for table in WAREHOUSE_TABLES:
            real = connection.execute(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = 'main' AND table_name = ? ORDER BY ordinal_position",
                [table],
            ).fetchall()
            assert columns(column_schema(table)) == real, table


def test_image_metadata_column_schema_is_the_written_parquet(zones):
    key = hour_key(datetime.now(UTC))
    land_image(zones, None, jpeg(32, 24), hour_start(key))
    hour_partition.update_hour(zones, key, workers=1)
    written = zones.read_parquet(layout.metadata_relpath(key)).schema
    assert columns(column_schema("image_metadata")) == [(field.name, str(field.type)) for field in written]


def test_membership_column_schemas_are_the_written_files_and_table(instance, zones, pg_dsn):
    land(zones, "batch_one.csv", f"{HEADER},referrer\nJohn Smith,john@example.com,1990-05-17,91234567,web\nx,y,z,w,v\n")
    assert run_batch(instance, "batch_one").success
    # the landed file: its required columns, as text (a column the rules do not read is not listed)
    assert columns(column_schema("raw_applications")) == [(name, "string") for name in HEADER.split(",")]
    for asset, kind in (("successful_applications", "successful"), ("unsuccessful_applications", "unsuccessful")):
        written = zones.read_parquet(f"members/{kind}/batch_one.parquet").schema
        assert columns(column_schema(asset)) == [(field.name, str(field.type)) for field in written], asset
    assert column_schema("classified_applications") == column_schema("successful_applications")  # their union
    with psycopg2.connect(pg_dsn) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT column_name, data_type, is_nullable = 'YES' FROM information_schema.columns"
            " WHERE table_schema = 'sales' AND table_name = 'members' ORDER BY ordinal_position"
        )
        real = cursor.fetchall()
    shown = column_schema("members").columns
    assert [(column.name, column.type, column.constraints.nullable) for column in shown] == real


# -- automation: Dagster's automation condition sensors instead of hand-written chaining ------------
def test_the_default_automation_sensor_runs_every_condition_but_the_demos():
    repository = defs.get_repository_def()
    graph = repository.asset_graph
    automated = {key.to_user_string() for key in graph.get_all_asset_keys() if graph.get(key).automation_condition}
    assert automated == {*WAREHOUSE_TABLES, "bi_views", "sales_demo_data", "image_bi_views"}
    default = repository.get_sensor_def("default_automation_condition_sensor")
    demo = repository.get_sensor_def("sales_demo_sensor")
    assert default.default_status == dg.DefaultSensorStatus.RUNNING
    assert {key.to_user_string() for key in default.asset_selection.resolve(graph)} & automated == automated - {
        "sales_demo_data"
    }
    assert demo.asset_selection.resolve(graph) == {dg.AssetKey("sales_demo_data")}
    assert "sales_warehouse_sensor" not in {sensor.name for sensor in repository.sensor_defs}


def test_the_warehouse_shows_every_upstream_in_the_graph():
    graph = defs.get_repository_def().asset_graph
    sales_database = graph.get(dg.AssetKey("sales_database"))
    assert sales_database.group_name == "sales"  # defined, not an implicit stub
    assert sales_database.is_observable  # with a data version the warehouse's automation follows
    parents = {parent.to_user_string() for parent in graph.get(dg.AssetKey("fact_sales")).parent_keys}
    assert {"sales_database", "sales_demo_data", "dim_member", "dim_item", "dim_date"} <= parents


def test_image_bi_views_code_version_is_its_sql():
    sql = (REPO_ROOT / "sql" / "images" / "bi_views.sql").read_bytes()
    code_version = defs.get_repository_def().asset_graph.get(dg.AssetKey("image_bi_views")).code_version
    assert code_version == hashlib.sha256(sql).hexdigest()[:16]


@pytest.mark.parametrize(
    ("module", "passes"), [("memberflow_assets.definitions", True), ("memberflow_assets.settings", False)]
)
def test_dagster_definitions_validate(tmp_path, module, passes):
    """`dagster definitions validate` in a clean environment (the embedded defaults): the code location
    passes, and a module without definitions does not (the command really checks)."""
    dagster = Path(sys.executable).with_name("dagster")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "DAGSTER_HOME": str(tmp_path)}
    result = subprocess.run(
        [dagster, "definitions", "validate", "-m", module, "-d", REPO_ROOT],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
    )
    assert (result.returncode == 0) is passes, result.stdout
    assert ("All code locations passed validation" in result.stdout) is passes


def test_one_asset_group_per_domain_and_every_job_tagged_with_its_domain():
    repository = defs.get_repository_def()
    graph = repository.asset_graph
    groups = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert set(groups.values()) == {"membership", "images", "sales", "warehouse"}
    assert groups["kafka_image_uploads"] == groups["image_metadata"] == groups["image_retention_audit"] == "images"
    jobs = [job for job in repository.get_all_jobs() if not job.name.startswith("__")]
    assert len(jobs) == 8
    # the jobs that select no asset: the purge and the migrations (op jobs), the compliance check's job
    domain_of_op_jobs = {
        "image_retention": "images",
        "image_retention_compliance": "images",
        "migrate_sales_database": "sales",
    }
    for job in jobs:
        selected = job.asset_layer.selected_asset_keys
        domains = {groups[key.to_user_string()] for key in selected} if selected else {domain_of_op_jobs[job.name]}
        assert {job.tags.get(DOMAIN_TAG)} == domains, job.name
