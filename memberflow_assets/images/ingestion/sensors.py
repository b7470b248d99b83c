"""The Kafka sensor: when the image topic has unconsumed messages and no batch is running, request a
run for the next offset ranges (per partition: from the committed offset, at most N messages).

The consumer group's committed offsets are the state, in Kafka where operators expect it; the
sensor's cursor only numbers the requests, so a re-evaluated tick (same cursor) cannot launch twice.
"""

from dataclasses import asdict

import dagster as dg

from memberflow_assets.images.ingestion.assets import kafka_image_uploads
from memberflow_assets.images.ingestion.jobs import kafka_image_ingest_job
from memberflow_assets.images.ingestion.resources import KafkaImagesResource
from memberflow_assets.settings import Settings

IN_FLIGHT = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def build_kafka_images_sensor(settings: Settings) -> dg.SensorDefinition:
    """The sensor, ticking every `settings.kafka_sensor_interval_seconds`."""

    @dg.sensor(
        name="kafka_images_sensor",
        job=kafka_image_ingest_job,
        minimum_interval_seconds=settings.kafka_sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Requests a kafka_image_ingest run for the next offset ranges of the image topic.",
    )
    def kafka_images_sensor(
        context: dg.SensorEvaluationContext, kafka_images: KafkaImagesResource
    ) -> dg.SensorResult | dg.SkipReason:
        return evaluate_kafka_images(context, kafka_images)

    return kafka_images_sensor


def evaluate_kafka_images(
    context: dg.SensorEvaluationContext, kafka_images: KafkaImagesResource
) -> dg.SensorResult | dg.SkipReason:
    """One tick of kafka_images_sensor."""
    if not kafka_images.bootstrap:
        return dg.SkipReason("Kafka ingestion is off (MEMBERFLOW_KAFKA_BOOTSTRAP is not set)")
    records = context.instance.get_run_records(dg.RunsFilter(job_name=kafka_image_ingest_job.name), limit=1)
    latest_run = records[0] if records else None
    if latest_run is not None and latest_run.dagster_run.status in IN_FLIGHT:
        return dg.SkipReason(f"batch run {latest_run.dagster_run.run_id} is still in progress")
    ranges = kafka_images.plan()
    if not ranges:
        return dg.SkipReason("no unconsumed messages")
    sequence = int(context.cursor or 0) + 1
    described = ",".join(f"{r.partition}:{r.start}-{r.end}" for r in ranges)
    request = dg.RunRequest(
        run_key=f"kafka-batch-{sequence}",
        run_config=dg.RunConfig(ops={kafka_image_uploads.op.name: {"config": {"ranges": [asdict(r) for r in ranges]}}}),
        tags={"memberflow/kafka_ranges": described[:255]},
    )
    context.log.info(f"requesting batch {sequence}: {described} ({sum(r.size for r in ranges)} messages)")
    return dg.SensorResult(run_requests=[request], cursor=str(sequence))
