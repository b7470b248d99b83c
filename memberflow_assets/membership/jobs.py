import dagster as dg

# One run per landed file: read, classify, write both outputs, then refresh sales.members.
# In-process: the steps are sequential and pass DataFrames, so separate processes only add start-up time.
membership_batch_job = dg.define_asset_job(
    "membership_batch",
    selection=dg.AssetSelection.groups("membership"),
    executor_def=dg.in_process_executor,
    tags={"memberflow/domain": "membership"},
    description="Processes one landed applications file (a partition of application_files).",
)
