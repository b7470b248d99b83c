import dagster as dg

from memberflow_assets.domains import domain_tags
from memberflow_assets.sales.assets import GROUP, sales_demo_data

sales_demo_job = dg.define_asset_job(
    "sales_demo",
    selection=dg.AssetSelection.assets(sales_demo_data),
    executor_def=dg.in_process_executor,
    tags=domain_tags(GROUP),
    description="Demo transactions for the members without any.",
)
