"""End to end: messages on the image topic are landed by runs the Kafka sensor launches in a real
`dagster dev` (webserver + daemon), and the asset's materialisation shows what each batch did."""

from collections import Counter

import pytest

from memberflow_assets.testing.images import small_image
from memberflow_assets_tests.conftest import create_topic
from memberflow_assets_tests.e2e.graphql import graphql
from memberflow_assets_tests.helpers import wait_until
from memberflow_assets_tests.images.ingestion.kafka_messages import Sent, produce, sidecars

pytestmark = pytest.mark.e2e

MATERIALIZATIONS = """
{ assetOrError(assetKey: {path: ["kafka_image_uploads"]}) {
    ... on Asset { assetMaterializations { metadataEntries {
        label ... on IntMetadataEntry { intValue } } } } } }
"""


@pytest.fixture
def kafka_topic_for_dagster(kafka_bootstrap, monkeypatch):
    """Set before `dagster_dev` starts, so its daemon and code server see the broker."""
    topic = create_topic(kafka_bootstrap)
    monkeypatch.setenv("MEMBERFLOW_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("MEMBERFLOW_KAFKA_TOPIC", topic)
    monkeypatch.setenv("MEMBERFLOW_KAFKA_SENSOR_INTERVAL_SECONDS", "2")
    return topic


def test_kafka_messages_are_landed_by_sensor_launched_runs(kafka_topic_for_dagster, kafka_bootstrap, request):
    port, data_dir = request.getfixturevalue("dagster_dev")  # started after the Kafka variables are set
    messages = [
        Sent(0, small_image("JPEG", 21), "e2e-1"),
        Sent(1, small_image("PNG", 22), "e2e-2"),
        Sent(1, b"definitely not an image", "e2e-3", expect="unsupported_type"),
    ]
    produce(kafka_bootstrap, kafka_topic_for_dagster, messages)

    wait_until(lambda: len(sidecars(data_dir)) == 2, 240, "both images to land", every=1)

    def outcomes() -> Counter | None:
        """The counts of every batch's materialisation added up, once they account for every message (a tick
        may have seen only some of the messages yet: then more than one batch took them)."""
        totals = Counter()
        for materialization in graphql(port, MATERIALIZATIONS)["assetOrError"].get("assetMaterializations", []):
            for entry in materialization["metadataEntries"]:
                totals[entry["label"]] += entry.get("intValue") or 0
        return totals if totals["landed"] + totals["quarantined"] >= len(messages) else None

    totals = wait_until(outcomes, 180, "the kafka_image_uploads materialisations", every=1)
    assert (totals["landed"], totals["quarantined"]) == (2, 1)
    assert sorted(s.kafka["key"] for s in sidecars(data_dir)) == ["e2e-1", "e2e-2"]
