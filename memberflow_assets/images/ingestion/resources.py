"""The Kafka image topic as a Dagster resource: where it is, and how much one run may take."""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from memberflow_assets.images.ingestion.config import IngestSettings
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
    """The image topic. Unset fields fall back to MEMBERFLOW_KAFKA_* (docs/images_ingestion.md)."""

    bootstrap: str | None = None
    topic: str | None = None
    group: str | None = None
    dead_letter_topic: str | None = None
    max_messages_per_partition: int | None = None

    def get_bootstrap(self) -> str | None:
        """None means Kafka ingestion is off."""
        return self.bootstrap or Settings.from_env().kafka_bootstrap

    def _settings(self) -> IngestSettings:
        return IngestSettings.from_env()

    def _required_bootstrap(self) -> str:
        bootstrap = self.get_bootstrap()
        if not bootstrap:
            raise dg.Failure("Kafka ingestion is off: set MEMBERFLOW_KAFKA_BOOTSTRAP")
        return bootstrap

    def plan(self) -> list[OffsetRange]:
        """The next batch: per partition with unconsumed messages, from the committed offset."""
        settings = self._settings()
        group = self.group or settings.kafka_group
        with open_consumer(self._required_bootstrap(), group, settings.kafka_config) as consumer:
            return plan_ranges(
                consumer,
                self.topic or settings.kafka_topic,
                self.max_messages_per_partition or settings.kafka_batch_max_messages,
            )

    @contextmanager
    def ingestor(self, zones: Zones, dsn: str) -> Iterator[KafkaIngestor]:
        settings = self._settings()
        with open_ingestor(
            self._required_bootstrap(),
            zones,
            dsn,
            settings,
            topic=self.topic or settings.kafka_topic,
            group=self.group or settings.kafka_group,
            dlq_topic=self.dead_letter_topic or settings.kafka_dlq_topic,
        ) as ingestor:
            yield ingestor
