"""Messages for the image topic and what the Kafka ingestion made of them: shared by the Kafka, CLI and
end-to-end tests."""

import dataclasses
from pathlib import Path

import dagster as dg
from confluent_kafka import Consumer, Producer, TopicPartition

from memberflow_assets.images import layout
from memberflow_assets.images.ingestion.kafka_ingest import HEADER_CONTENT_TYPE, HEADER_EVENT_TIME, HEADER_SOURCE
from memberflow_assets.images.ingestion.resources import KafkaImagesResource
from memberflow_assets.images.ingestion.sensors import build_kafka_images_sensor
from memberflow_assets.settings import Settings


@dataclasses.dataclass
class Sent:
    partition: int
    value: bytes
    key: str | None
    source: str = "cameras"
    expect: str = "landed"  # landed / duplicate / a quarantine reason


def produce(bootstrap: str, topic: str, messages: list[Sent]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for number, message in enumerate(messages):
        producer.produce(
            topic,
            partition=message.partition,
            value=message.value,
            key=message.key.encode() if message.key else None,
            headers=[
                (HEADER_CONTENT_TYPE, b"image/jpeg"),  # a claim; the content decides
                (HEADER_SOURCE, message.source.encode()),
                (HEADER_EVENT_TIME, f"2026-01-02T03:04:{number:02d}Z".encode()),
            ],
        )
    assert producer.flush(30) == 0


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int = 2) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        return {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=10)}
    finally:
        consumer.close()


def sidecars(data_dir: Path) -> list[layout.Sidecar]:
    return [layout.Sidecar.from_json(p.read_bytes()) for p in (data_dir / "landing" / "images").rglob("*.json")]


def evaluate_sensor(instance: dg.DagsterInstance, cursor: str | None = None):
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"kafka_images": KafkaImagesResource.from_settings(Settings.from_env())},
    )
    return build_kafka_images_sensor(Settings.from_env())(context)
