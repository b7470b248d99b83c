import os

import dagster as dg

from memberflow_assets.sales.jobs import sales_demo_job

DEMO_ENV = "MEMBERFLOW_SALES_DEMO"  # "1" (set by `memberflow start`): demo transactions follow new members


@dg.asset_sensor(
    asset_key=dg.AssetKey("members"),
    job=sales_demo_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING
    if os.environ.get(DEMO_ENV) == "1"
    else dg.DefaultSensorStatus.STOPPED,
    description=f"Demo only (running when {DEMO_ENV}=1): demo transactions for new members after each members load.",
)
def sales_demo_sensor(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry) -> dg.RunRequest:
    return dg.RunRequest(run_key=f"after-members-run-{asset_event.run_id}")
