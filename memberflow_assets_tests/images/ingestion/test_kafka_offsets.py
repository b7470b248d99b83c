"""No message is stranded by a wrong end offset: on Tansu, ten messages produced as one record batch are
reported by ListOffsets as ending at offset 1. After a bounded run took the first few, a fresh
`kafka-ingest --once`, the looping `kafka-ingest` and the sensor must each take the rest."""

import os
import subprocess
import sys

import dagster as dg
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from memberflow_assets.cli import main
from memberflow_assets.images.ingestion.kafka_ingest import HEADER_SOURCE
from memberflow_assets.settings import Settings
from memberflow_assets.testing.images import small_image
from memberflow_assets_tests.helpers import deployment_defs, wait_until
from memberflow_assets_tests.images.ingestion.kafka_messages import committed_offsets, evaluate_sensor, sidecars

MESSAGES = 10


def produce_one_record_batch(bootstrap: str, topic: str) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2000})  # flushed together: one batch
    for number in range(MESSAGES):
        producer.produce(
            topic,
            partition=0,
            value=small_image("PNG", 100 + number),
            key=f"shot-{number}".encode(),
            headers=[(HEADER_SOURCE, b"cameras")],
        )
    assert producer.flush(30) == 0


def list_offsets_end(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "list-offsets"})
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
    finally:
        consumer.close()


@pytest.fixture(params=[4, 1], ids=["first-4-taken", "first-1-taken"])
def stranded(request, kafka_env, kafka_bootstrap, memberflow_env):
    """A topic whose one record batch of 10 was consumed up to `request.param` by `kafka-ingest --once`."""
    produce_one_record_batch(kafka_bootstrap, kafka_env)
    assert main(["kafka-ingest", "--once", "--max-messages", str(request.param)]) == 0
    group = Settings.from_env().ingest.kafka_group
    assert committed_offsets(kafka_bootstrap, group, kafka_env) == {0: request.param, 1: -1001}
    # The broker's answer that strands the rest: at or behind the committed offset.
    assert list_offsets_end(kafka_bootstrap, kafka_env) <= request.param
    assert len(sidecars(memberflow_env)) == request.param
    return group


def assert_all_landed(kafka_bootstrap, kafka_env, group, memberflow_env) -> None:
    assert sorted(s.kafka["key"] for s in sidecars(memberflow_env)) == sorted(f"shot-{n}" for n in range(MESSAGES))
    assert committed_offsets(kafka_bootstrap, group, kafka_env)[0] == MESSAGES


def test_a_fresh_once_run_takes_the_rest(stranded, kafka_env, kafka_bootstrap, memberflow_env):
    assert main(["kafka-ingest", "--once"]) == 0
    assert_all_landed(kafka_bootstrap, kafka_env, stranded, memberflow_env)


def test_the_looping_consumer_takes_the_rest(stranded, kafka_env, kafka_bootstrap, memberflow_env):
    command = [sys.executable, "-m", "memberflow_assets.cli", "kafka-ingest", "--poll-seconds", "0.2"]
    loop = subprocess.Popen(command, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: len(sidecars(memberflow_env)) == MESSAGES, timeout=120)
        wait_until(lambda: committed_offsets(kafka_bootstrap, stranded, kafka_env)[0] == MESSAGES, timeout=60)
    finally:
        loop.terminate()
        loop.wait(timeout=30)
    assert_all_landed(kafka_bootstrap, kafka_env, stranded, memberflow_env)


def test_the_sensor_requests_the_rest(stranded, kafka_env, kafka_bootstrap, memberflow_env, request):
    taken = committed_offsets(kafka_bootstrap, stranded, kafka_env)[0]
    instance = dg.DagsterInstance.ephemeral()
    result = evaluate_sensor(instance)
    assert not isinstance(result, dg.SkipReason), result.skip_message
    [run_request] = result.run_requests
    ranges = run_request.run_config["ops"]["kafka_image_uploads"]["config"]["ranges"]
    assert [(r["partition"], r["start"]) for r in ranges] == [(0, taken)]  # partition 1 is empty: not planned

    run = (
        deployment_defs()
        .resolve_job_def("kafka_image_ingest")
        .execute_in_process(run_config=run_request.run_config, instance=instance, tags=run_request.tags)
    )
    assert run.success
    assert_all_landed(kafka_bootstrap, kafka_env, stranded, memberflow_env)
    skipped = evaluate_sensor(instance, cursor=result.cursor)
    assert isinstance(skipped, dg.SkipReason) and "no unconsumed messages" in skipped.skip_message
