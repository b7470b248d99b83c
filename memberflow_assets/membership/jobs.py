import dagster as dg

from memberflow_assets.domains import domain_tags
from memberflow_assets.membership.assets import GROUP

# One run per landed file: read, classify, write both outputs, then refresh sales.members.
# In-process: the steps are sequential and pass DataFrames, so separate processes only add start-up time.
membership_batch_job = dg.define_asset_job(
    "membership_batch",
    selection=dg.AssetSelection.groups(GROUP),
    executor_def=dg.in_process_executor,
    tags=domain_tags(GROUP),
    description="Processes one landed applications file (a partition of application_files).",
)
