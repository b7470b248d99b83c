"""Kafka ingestion against a real broker (Tansu): landing, quarantine, crash before commit, Dagster sensor and run."""

import json
import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
from confluent_kafka import Consumer, TopicPartition

from memberflow_assets.images.ingestion.config import IngestSettings
from memberflow_assets.images.ingestion.kafka_ingest import (
    HEADER_REASON,
    HEADER_SOURCE,
    consumer_config,
    open_ingestor,
    plan_ranges,
)
from memberflow_assets.settings import Settings
from memberflow_assets.testing.images import jpeg_of_about, png_claiming, small_image, unique_jpeg
from memberflow_assets.zones import Zones
from memberflow_assets_tests.conftest import create_topic
from memberflow_assets_tests.helpers import deployment_defs, wait_until
from memberflow_assets_tests.images.ingestion.kafka_messages import (
    Sent,
    committed_offsets,
    evaluate_sensor,
    produce,
    sidecars,
)


def good_and_bad_messages() -> list[Sent]:
    jpeg = unique_jpeg(jpeg_of_about(30_000), 1)
    return [
        Sent(0, jpeg, "cam-1"),
        Sent(1, small_image("PNG", 1), "cam-2"),
        Sent(0, small_image("WEBP", 1), "cam-3"),
        Sent(1, small_image("GIF", 1), "cam-4"),
        Sent(0, small_image("TIFF", 1), "cam-5"),
        Sent(1, small_image("JPEG", 2), "phone-1", source="phones"),
        Sent(1, jpeg, "cam-1", expect="duplicate"),  # the producer sent it twice
        Sent(0, b"just some text, named photo.jpg\n", "cam-6", expect="unsupported_type"),
        Sent(1, b"", "cam-7", expect="empty"),
        Sent(0, jpeg[: len(jpeg) // 2], "cam-8", expect="truncated"),
        Sent(1, png_claiming(100_000, 100_000), "cam-9", expect="too_many_pixels"),
        Sent(0, unique_jpeg(jpeg_of_about(150_000), 2), "cam-10", expect="too_large"),
        Sent(1, small_image("PNG", 3), "cam-2", expect="key_conflict"),  # cam-2 already named another image
    ]


def partition_ends(messages: list[Sent]) -> dict[int, int]:
    """Where each partition ends after producing `messages` to a new topic. (Not from ListOffsets: Tansu
    answers it per record batch, see kafka_ingest.py.)"""
    return dict(Counter(m.partition for m in messages))


def quarantine_reasons(data_dir: Path) -> list[dict]:
    root = data_dir / "quarantine" / "images"
    return [json.loads(p.read_text()) for p in root.rglob("*.reason.json")] if root.exists() else []


def registry_count(dsn: str) -> int:
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM images.registry")
        return cursor.fetchone()[0]


def ingest_all(bootstrap: str, settings: IngestSettings, dsn: str, topic: str, group: str, dlq_topic=None):
    with open_ingestor(bootstrap, Zones.from_settings(), dsn, settings, topic, group, dlq_topic) as ingestor:
        return ingestor.ingest(plan_ranges(ingestor.consumer, topic, 1000))


def assert_everything_landed_once(data_dir: Path, dsn: str, messages: list[Sent], topic: str) -> None:
    landed = sidecars(data_dir)
    expected = [m for m in messages if m.expect == "landed"]
    assert sorted((s.client, s.kafka["key"]) for s in landed) == sorted((m.source, m.key) for m in expected)
    assert len({s.image_id for s in landed}) == len(expected) == registry_count(dsn)
    for sidecar in landed:
        assert sidecar.source == "kafka" and sidecar.kafka["topic"] == topic
        assert (data_dir / sidecar.image_relpath).stat().st_size == sidecar.size_bytes
        assert sidecar.event_time.startswith("2026-01-02T03:04:")
    reasons = sorted(r["reason"] for r in quarantine_reasons(data_dir))
    assert reasons == sorted(m.expect for m in messages if m.expect not in ("landed", "duplicate"))


def test_images_land_and_bad_messages_are_quarantined_and_committed(kafka_bootstrap, settings, pg_dsn, memberflow_env):
    topic, group = create_topic(kafka_bootstrap), f"g-{uuid.uuid4().hex[:6]}"
    messages = good_and_bad_messages()
    produce(kafka_bootstrap, topic, messages)

    stats = ingest_all(kafka_bootstrap, settings, pg_dsn, topic, group)

    assert (stats.landed, stats.duplicates, stats.quarantined, stats.complete) == (6, 1, 6, True)
    assert dict(stats.reasons) == {m.expect: 1 for m in messages if m.expect not in ("landed", "duplicate")}
    assert_everything_landed_once(memberflow_env, pg_dsn, messages, topic)
    assert committed_offsets(kafka_bootstrap, group, topic) == partition_ends(messages) == stats.committed
    conflict = next(r for r in quarantine_reasons(memberflow_env) if r["reason"] == "key_conflict")
    assert conflict["kafka"]["key"] == "cam-2" and conflict["quarantine_id"] == f"kafka-{topic}-1-6"
    # Nothing left: the next plan is empty and a second pass changes nothing.
    assert ingest_all(kafka_bootstrap, settings, pg_dsn, topic, group).messages == 0


def test_a_message_whose_source_or_key_cannot_be_stored_is_quarantined_and_the_rest_land(
    kafka_bootstrap, settings, pg_dsn, memberflow_env
):
    """The registry holds the client (the source-application header) and the producer's key as text: a NUL
    in either, or one of megabytes, made the whole fetched batch fail, for ever (never committed)."""
    topic, group = create_topic(kafka_bootstrap), f"g-{uuid.uuid4().hex[:6]}"
    messages = [
        Sent(0, small_image("PNG", 91), "cam-1"),
        Sent(0, small_image("PNG", 92), "cam-2", source="cam\x00eras", expect="bad_identity"),
        Sent(1, small_image("PNG", 93), "k\x00ey", expect="bad_identity"),
        Sent(1, small_image("PNG", 94), "cam-4", source="s" * 100_000, expect="bad_identity"),
        Sent(0, small_image("PNG", 95), "k" * 10_000, expect="bad_identity"),
        Sent(1, small_image("PNG", 96), "cam-6"),
    ]
    produce(kafka_bootstrap, topic, messages)

    stats = ingest_all(kafka_bootstrap, settings, pg_dsn, topic, group)

    assert (stats.landed, stats.quarantined, dict(stats.reasons)) == (2, 4, {"bad_identity": 4})
    assert committed_offsets(kafka_bootstrap, group, topic) == partition_ends(messages)
    assert sorted(s.kafka["key"] for s in sidecars(memberflow_env)) == ["cam-1", "cam-6"]
    reasons = quarantine_reasons(memberflow_env)
    assert len(reasons) == 4 and all(len(json.dumps(reason)) < 20_000 for reason in reasons)


def test_a_resent_image_behind_a_key_conflict_in_one_fetch_is_a_duplicate(
    kafka_bootstrap, settings, pg_dsn, memberflow_env
):
    """The producer re-sends a landed image (same key, same bytes) right after another message that
    reuses the key for different bytes; both arrive in one fetched batch."""
    topic, group = create_topic(kafka_bootstrap, 1), f"g-{uuid.uuid4().hex[:6]}"
    landed = small_image("PNG", 40)
    produce(kafka_bootstrap, topic, [Sent(0, landed, "cam-1")])
    assert ingest_all(kafka_bootstrap, settings, pg_dsn, topic, group).landed == 1

    produce(kafka_bootstrap, topic, [Sent(0, small_image("PNG", 41), "cam-1"), Sent(0, landed, "cam-1")])
    stats = ingest_all(kafka_bootstrap, settings, pg_dsn, topic, group)

    assert (stats.landed, stats.duplicates, stats.quarantined, dict(stats.reasons)) == (0, 1, 1, {"key_conflict": 1})
    [conflict] = quarantine_reasons(memberflow_env)
    assert conflict["kafka"]["offset"] == 1  # the different bytes, not the re-sent copy
    assert registry_count(pg_dsn) == 1


CRASH_BEFORE_COMMIT = """
import os, signal, sys
from memberflow_assets.settings import Settings
from memberflow_assets.images.ingestion.kafka_ingest import KafkaIngestor, open_ingestor, plan_ranges
from memberflow_assets.postgres import sales_dsn
from memberflow_assets.zones import Zones
from memberflow_assets_tests.conftest import create_topic
from memberflow_assets_tests.helpers import wait_until

def crash(self, handled, stats):
    print(f"landed {stats.landed}, quarantined {stats.quarantined}: killed before committing", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

KafkaIngestor._commit = crash
bootstrap, topic, group = sys.argv[1:4]
settings = Settings.from_env()
zones = Zones.from_settings(settings)
with open_ingestor(bootstrap, zones, sales_dsn(settings), settings.ingest, topic, group, None) as i:
    i.ingest(plan_ranges(i.consumer, topic, 1000))
"""


def test_killed_between_landing_and_commit_then_restarted_loses_and_duplicates_nothing(
    kafka_bootstrap, settings, pg_dsn, memberflow_env
):
    topic, group = create_topic(kafka_bootstrap), f"g-{uuid.uuid4().hex[:6]}"
    messages = good_and_bad_messages()
    produce(kafka_bootstrap, topic, messages)
    data_dir = memberflow_env

    killed = subprocess.run(
        [sys.executable, "-c", CRASH_BEFORE_COMMIT, kafka_bootstrap, topic, group], capture_output=True, text=True
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert "killed before committing" in killed.stdout
    landed_before_kill = len(sidecars(data_dir))
    assert landed_before_kill > 0  # the kill really came after landings
    committed = committed_offsets(kafka_bootstrap, group, topic)
    assert all(offset < 0 for offset in committed.values())  # and before any commit

    stats = ingest_all(kafka_bootstrap, settings, pg_dsn, topic, group)  # the restart: everything is redelivered

    assert stats.duplicates >= landed_before_kill  # redelivered images land nothing new
    assert stats.landed + landed_before_kill == 6
    assert_everything_landed_once(data_dir, pg_dsn, messages, topic)
    assert committed_offsets(kafka_bootstrap, group, topic) == partition_ends(messages)


def test_bad_messages_are_copied_to_the_dead_letter_topic(kafka_bootstrap, settings, pg_dsn):
    topic, dlq, group = create_topic(kafka_bootstrap), create_topic(kafka_bootstrap, 1), f"g-{uuid.uuid4().hex[:6]}"
    produce(
        kafka_bootstrap,
        topic,
        [Sent(0, small_image("JPEG", 5), "ok-1"), Sent(1, b"garbage", "bad-1", expect="unsupported_type")],
    )
    stats = ingest_all(kafka_bootstrap, settings, pg_dsn, topic, group, dlq_topic=dlq)
    assert (stats.landed, stats.quarantined) == (1, 1)

    consumer = Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": "dlq-reader", "auto.offset.reset": "earliest"}
    )
    consumer.assign([TopicPartition(dlq, 0, 0)])
    try:

        def dead_letter():
            polled = consumer.poll(0.5)
            return polled if polled is not None and not polled.error() else None

        message = wait_until(dead_letter, what="the dead letter")
        assert (message.value(), message.key()) == (b"garbage", b"bad-1")
        assert (HEADER_REASON, b"unsupported_type") in message.headers()
        assert consumer.poll(1.0) is None  # exactly one dead letter
    finally:
        consumer.close()
    headers = dict(message.headers())
    assert message.value() == b"garbage" and message.key() == b"bad-1"
    assert headers[HEADER_REASON] == b"unsupported_type" and headers[HEADER_SOURCE] == b"cameras"


# -- Dagster ------------------------------------------------------------------------------------------
def test_sensor_requests_a_run_per_batch_and_the_run_lands_it(kafka_env, pg_dsn, kafka_bootstrap, memberflow_env):
    messages = good_and_bad_messages()
    produce(kafka_bootstrap, kafka_env, messages)
    instance = dg.DagsterInstance.ephemeral()

    result = evaluate_sensor(instance)
    [request] = result.run_requests
    ranges = request.run_config["ops"]["kafka_image_uploads"]["config"]["ranges"]
    limit = Settings.from_env().ingest.kafka_batch_max_messages
    assert sorted((r["partition"], r["start"], r["end"]) for r in ranges) == [(0, 0, limit), (1, 0, limit)]
    assert request.run_key == "kafka-batch-1" and result.cursor == "1"

    run = (
        deployment_defs()
        .resolve_job_def("kafka_image_ingest")
        .execute_in_process(run_config=request.run_config, instance=instance, tags=request.tags)
    )
    assert run.success
    [materialization] = run.asset_materializations_for_node("kafka_image_uploads")
    metadata = {key: value.value for key, value in materialization.metadata.items()}
    assert (metadata["landed"], metadata["duplicates"], metadata["quarantined"]) == (6, 1, 6)
    assert metadata["committed_offsets"] == {str(p): end for p, end in partition_ends(messages).items()}
    assert metadata["caught_up"] is True
    assert_everything_landed_once(memberflow_env, pg_dsn, messages, kafka_env)

    skipped = evaluate_sensor(instance, cursor=result.cursor)
    assert isinstance(skipped, dg.SkipReason) and "no unconsumed messages" in skipped.skip_message


def test_sensor_waits_for_the_running_batch(kafka_env, kafka_bootstrap):
    produce(kafka_bootstrap, kafka_env, [Sent(0, small_image("PNG", 6), "k")])
    instance = dg.DagsterInstance.ephemeral()
    job = deployment_defs().resolve_job_def("kafka_image_ingest")
    instance.create_run_for_job(job, run_config={}, status=dg.DagsterRunStatus.STARTED)
    skipped = evaluate_sensor(instance)
    assert isinstance(skipped, dg.SkipReason) and "still in progress" in skipped.skip_message


def test_sensor_is_quiet_when_kafka_is_off(memberflow_env):
    skipped = evaluate_sensor(dg.DagsterInstance.ephemeral())
    assert isinstance(skipped, dg.SkipReason) and "MEMBERFLOW_KAFKA_BOOTSTRAP" in skipped.skip_message


def test_bounded_batches_follow_each_other_until_the_topic_is_consumed(
    kafka_env, kafka_bootstrap, pg_dsn, memberflow_env, monkeypatch
):
    """Three messages per partition and run: the sensor keeps requesting batches until all are landed,
    even though Tansu's ListOffsets reports only the start of the last record batch."""
    monkeypatch.setenv("MEMBERFLOW_KAFKA_BATCH_MAX_MESSAGES", "3")
    messages = good_and_bad_messages()
    produce(kafka_bootstrap, kafka_env, messages)
    instance = dg.DagsterInstance.ephemeral()
    job = deployment_defs().resolve_job_def("kafka_image_ingest")
    cursor, caught_up = None, []
    for _ in range(8):
        result = evaluate_sensor(instance, cursor)
        if isinstance(result, dg.SkipReason):
            break
        [request] = result.run_requests
        cursor = result.cursor
        run = job.execute_in_process(run_config=request.run_config, instance=instance, tags=request.tags)
        [materialization] = run.asset_materializations_for_node("kafka_image_uploads")
        caught_up.append(materialization.metadata["caught_up"].value)
    assert caught_up[:2] == [False, False] and caught_up[-1] is True  # 7 messages: 3 + 3 + 1
    assert "no unconsumed messages" in result.skip_message
    assert_everything_landed_once(memberflow_env, pg_dsn, messages, kafka_env)
    group = Settings.from_env().ingest.kafka_group
    assert committed_offsets(kafka_bootstrap, group, kafka_env) == partition_ends(messages)


def test_cluster_settings_come_from_configuration_but_cannot_break_the_guarantees(memberflow_env, monkeypatch):
    monkeypatch.setenv("MEMBERFLOW_KAFKA_BOOTSTRAP", "broker:9094")  # the variable is read with Kafka on
    monkeypatch.setenv("MEMBERFLOW_KAFKA_CONFIG", '{"security.protocol": "SSL", "enable.auto.commit": true}')
    settings = Settings.from_env().ingest
    config = consumer_config("broker:9094", "g", settings.kafka_config)
    assert config["security.protocol"] == "SSL" and config["enable.auto.commit"] is False
    assert settings.kafka_client_config("broker:9094")["security.protocol"] == "SSL"
    monkeypatch.setenv("MEMBERFLOW_KAFKA_CONFIG", '["not", "an", "object"]')
    with pytest.raises(ValueError, match="JSON object"):
        Settings.from_env()
