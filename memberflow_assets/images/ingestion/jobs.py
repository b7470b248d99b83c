"""The Kafka ingestion job: one run lands one batch of offset ranges (see assets.py)."""

import dagster as dg

from memberflow_assets.domains import domain_tags
from memberflow_assets.images import GROUP
from memberflow_assets.images.ingestion.assets import kafka_image_uploads

# In-process: one step, and most of a run's cost would otherwise be starting a second process.
kafka_image_ingest_job = dg.define_asset_job(
    "kafka_image_ingest",
    selection=[kafka_image_uploads],
    executor_def=dg.in_process_executor,
    tags=domain_tags(GROUP),
    description="Lands one batch of the Kafka image topic (explicit offset ranges in the run config).",
)
