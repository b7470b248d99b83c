"""The images processing job: the hourly processing of new images (the BI views follow by their automation)."""

import dagster as dg

from memberflow_assets.domains import domain_tags
from memberflow_assets.images import GROUP

IMAGE_ASSET_KEYS = (dg.AssetKey("image_thumbnails"), dg.AssetKey("image_metadata"))

# One run per hour with new images. In-process: the asset runs its own pool of worker processes.
image_processing_job = dg.define_asset_job(
    "image_processing",
    selection=dg.AssetSelection.assets(*IMAGE_ASSET_KEYS),
    executor_def=dg.in_process_executor,
    tags=domain_tags(GROUP),
    description="Processes the new images of one hour (a partition of image_hours) and rewrites its metadata.",
)
