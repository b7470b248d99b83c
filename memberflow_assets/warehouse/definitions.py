"""The warehouse domain's definitions: the DuckDB star schema and BI views with their checks, the refresh
job and its 15-minute schedule."""

import dagster as dg

from memberflow_assets.warehouse import assets
from memberflow_assets.warehouse.jobs import sales_warehouse_refresh_job, sales_warehouse_schedule

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets]),
    asset_checks=dg.load_asset_checks_from_modules([assets]),
    jobs=[sales_warehouse_refresh_job],
    schedules=[sales_warehouse_schedule],
)
