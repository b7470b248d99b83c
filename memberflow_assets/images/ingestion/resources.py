"""The Kafka image topic as a Dagster resource: where it is, and how much one run may take."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from pydantic import Field

from memberflow_assets.images.ingestion.config import IngestSettings, parse_kafka_config
from memberflow_assets.images.ingestion.kafka_ingest import (
    KafkaIngestor,
    OffsetRange,
    open_consumer,
    open_ingestor,
    plan_ranges,
)
from memberflow_assets.settings import KAFKA_CONFIG_ENV, Settings
from memberflow_assets.zones import Zones


class KafkaImagesResource(dg.ConfigurableResource):
    """The image topic and how its messages land, configured from MEMBERFLOW_* (docs/images_ingestion.md)."""

    bootstrap: str | None = Field(
        default=None, description="MEMBERFLOW_KAFKA_BOOTSTRAP; unset: Kafka ingestion is off."
    )
    topic: str = Field(description="MEMBERFLOW_KAFKA_TOPIC")
    group: str = Field(description="MEMBERFLOW_KAFKA_GROUP: the consumer group whose offsets are the progress")
    dead_letter_topic: str | None = Field(default=None, description="MEMBERFLOW_KAFKA_DLQ_TOPIC; unset: none.")
    max_messages_per_partition: int = Field(description="MEMBERFLOW_KAFKA_BATCH_MAX_MESSAGES: per run")
    max_message_bytes: int = Field(description="MEMBERFLOW_MAX_UPLOAD_BYTES: larger messages are quarantined")
    max_pixels: int = Field(description="MEMBERFLOW_MAX_IMAGE_PIXELS: larger images are quarantined")
    durable: bool = Field(
        description="MEMBERFLOW_INGEST_DURABLE: files fsynced, registry commit flushed before the offset commit"
    )
    client_config: str = Field(
        default="{}",
        description="MEMBERFLOW_KAFKA_CONFIG: librdkafka settings (JSON), e.g. TLS/SASL; may hold credentials, so "
        "the code location passes the variable, never its value",
    )

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaImagesResource:
        ingest = settings.ingest
        return cls(
            bootstrap=settings.kafka_bootstrap,
            topic=ingest.kafka_topic,
            group=ingest.kafka_group,
            dead_letter_topic=ingest.kafka_dlq_topic,
            max_messages_per_partition=ingest.kafka_batch_max_messages,
            max_message_bytes=ingest.max_upload_bytes,
            max_pixels=ingest.max_pixels,
            durable=ingest.durable,
            **({"client_config": dg.EnvVar(KAFKA_CONFIG_ENV)} if ingest.kafka_config else {}),
        )

    def _ingest_settings(self) -> IngestSettings:
        return IngestSettings(
            max_upload_bytes=self.max_message_bytes,
            max_pixels=self.max_pixels,
            durable=self.durable,
            kafka_config=parse_kafka_config(self.client_config),
        )

    def _required_bootstrap(self) -> str:
        if not self.bootstrap:
            raise dg.Failure("Kafka ingestion is off: set MEMBERFLOW_KAFKA_BOOTSTRAP")
        return self.bootstrap

    def plan(self) -> list[OffsetRange]:
        """The next batch: per partition with unconsumed messages, from the committed offset."""
        config = parse_kafka_config(self.client_config)
        with open_consumer(self._required_bootstrap(), self.group, config) as consumer:
            return plan_ranges(consumer, self.topic, self.max_messages_per_partition)

    @contextmanager
    def ingestor(self, zones: Zones, dsn: str) -> Iterator[KafkaIngestor]:
        with open_ingestor(
            self._required_bootstrap(),
            zones,
            dsn,
            self._ingest_settings(),
            self.topic,
            self.group,
            self.dead_letter_topic,
        ) as ingestor:
            yield ingestor
