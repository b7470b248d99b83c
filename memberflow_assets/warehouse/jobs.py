import dagster as dg

from memberflow_assets.domains import domain_tags
from memberflow_assets.warehouse.assets import GROUP, sales_warehouse

sales_warehouse_refresh_job = dg.define_asset_job(
    "sales_warehouse_refresh",
    selection=dg.AssetSelection.assets(sales_warehouse),
    executor_def=dg.in_process_executor,
    tags=domain_tags(GROUP),
    description="Incremental refresh of the sales star schema and the BI views, then their checks "
    "(run config `full_refresh: true` rebuilds everything).",
)

# Transactions are written outside Dagster (the shop, logistics completing them), so they are polled.
sales_warehouse_schedule = dg.ScheduleDefinition(
    job=sales_warehouse_refresh_job,
    cron_schedule="*/15 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every 15 minutes: loads the transactions written or completed since the last refresh.",
)
