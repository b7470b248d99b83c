"""What the Dagster UI shows of the loaded definitions: descriptions that render as written, and the
assets shown as overdue when they are (evaluated by Dagster's own freshness daemon)."""

import re
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from dagster._core.definitions.freshness import FreshnessState
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.test_utils import InProcessTestWorkspaceLoadTarget, freeze_time
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._daemon.freshness import FreshnessDaemon

from memberflow_assets import definitions
from memberflow_assets.definitions import defs
from memberflow_assets.settings import REPO_ROOT

# Markdown passes `<word ...>` through as an HTML tag, which the UI drops ("members/successful/.parquet").
# Inside a code span it is shown literally.
TAG_LIKE = re.compile(r"</?[A-Za-z][\w-]*[^<>]*>")
CODE_SPAN = re.compile(r"`[^`]*`")
# membership/ is being rewritten in parallel (issue 9); its descriptions get their code spans there.
MEMBERSHIP_PENDING = {
    "asset successful_applications",
    "asset unsuccessful_applications",
    "check membership_id_valid",
}


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
    eaten = {
        name: TAG_LIKE.findall(CODE_SPAN.sub("", text))
        for name, text in shown_descriptions().items()
        if name not in MEMBERSHIP_PENDING
    }
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
