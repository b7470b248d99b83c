"""The Kafka image topic as a Dagster resource: where it is, and how much one run may take."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from pydantic import Field

from memberflow_assets.images.ingestion.kafka_ingest import (
    KafkaIngestor,
    OffsetRange,
    open_consumer,
    open_ingestor,
    plan_ranges,
)
from memberflow_assets.settings import Settings
from memberflow_assets.zones import Zones


class KafkaImagesResource(dg.ConfigurableResource):
    """The image topic, configured from MEMBERFLOW_KAFKA_* (docs/images_ingestion.md). The message limits
    and librdkafka settings (which may hold credentials) come from the environment when a run uses it."""

    bootstrap: str | None = Field(
        default=None, description="MEMBERFLOW_KAFKA_BOOTSTRAP; unset: Kafka ingestion is off."
    )
    topic: str = Field(description="MEMBERFLOW_KAFKA_TOPIC")
    group: str = Field(description="MEMBERFLOW_KAFKA_GROUP: the consumer group whose offsets are the progress")
    dead_letter_topic: str | None = Field(default=None, description="MEMBERFLOW_KAFKA_DLQ_TOPIC; unset: none.")
    max_messages_per_partition: int = Field(description="MEMBERFLOW_KAFKA_BATCH_MAX_MESSAGES: per run")

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaImagesResource:
        ingest = settings.ingest
        return cls(
            bootstrap=settings.kafka_bootstrap,
            topic=ingest.kafka_topic,
            group=ingest.kafka_group,
            dead_letter_topic=ingest.kafka_dlq_topic,
            max_messages_per_partition=ingest.kafka_batch_max_messages,
        )

    def _required_bootstrap(self) -> str:
        if not self.bootstrap:
            raise dg.Failure("Kafka ingestion is off: set MEMBERFLOW_KAFKA_BOOTSTRAP")
        return self.bootstrap

    def plan(self) -> list[OffsetRange]:
        """The next batch: per partition with unconsumed messages, from the committed offset."""
        with open_consumer(self._required_bootstrap(), self.group, Settings.from_env().ingest.kafka_config) as consumer:
            return plan_ranges(consumer, self.topic, self.max_messages_per_partition)

    @contextmanager
    def ingestor(self, zones: Zones, dsn: str) -> Iterator[KafkaIngestor]:
        ingest = Settings.from_env().ingest
        with open_ingestor(
            self._required_bootstrap(), zones, dsn, ingest, self.topic, self.group, self.dead_letter_topic
        ) as ingestor:
            yield ingestor
