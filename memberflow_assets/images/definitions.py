"""The images domain's definitions: Kafka ingestion, hourly processing and BI views, the 7-day retention
with its compliance check, and the Kafka resource only images use."""

import dagster as dg

from memberflow_assets.images.ingestion import assets as ingestion_assets
from memberflow_assets.images.ingestion.jobs import kafka_image_ingest_job
from memberflow_assets.images.ingestion.resources import KafkaImagesResource
from memberflow_assets.images.ingestion.sensors import build_kafka_images_sensor
from memberflow_assets.images.processing import assets as processing_assets
from memberflow_assets.images.processing.jobs import image_processing_job
from memberflow_assets.images.processing.sensors import build_landing_images_sensor
from memberflow_assets.images.retention.jobs import (
    image_retention_audit,
    image_retention_compliance_job,
    image_retention_compliance_schedule,
    image_retention_job,
    image_retention_schedule,
    images_purged_within_7_days,
)
from memberflow_assets.settings import Settings


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        assets=[*dg.load_assets_from_modules([ingestion_assets, processing_assets]), image_retention_audit],
        asset_checks=[*dg.load_asset_checks_from_modules([processing_assets]), images_purged_within_7_days],
        jobs=[
            kafka_image_ingest_job,
            image_processing_job,
            image_retention_job,
            image_retention_compliance_job,
        ],
        sensors=[build_kafka_images_sensor(settings), build_landing_images_sensor(settings)],
        schedules=[image_retention_schedule, image_retention_compliance_schedule],
        resources={"kafka_images": KafkaImagesResource.from_settings(settings)},
    )
