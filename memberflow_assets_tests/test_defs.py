"""What the Dagster UI shows of the loaded definitions: descriptions that render as written."""

import re

import pytest

from memberflow_assets.definitions import defs

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
