"""The memberflow code location: every domain's definitions, the shared resources and Dagster's default
automation sensor."""

import dagster as dg

from memberflow_assets.images import definitions as images
from memberflow_assets.membership import definitions as membership
from memberflow_assets.resources import SalesDatabase, ZonesResource
from memberflow_assets.sales import definitions as sales
from memberflow_assets.sales.assets import sales_demo_data
from memberflow_assets.warehouse import definitions as warehouse
from memberflow_assets.warehouse.resources import Warehouse

# The one Definitions object at module scope (Dagster refuses a module with more than one).
defs = dg.Definitions.merge(
    membership.defs,
    images.defs,
    sales.defs,
    warehouse.defs,
    dg.Definitions(
        sensors=[
            # Dagster's default automation sensor, running: every asset's automation condition but the demo's
            dg.AutomationConditionSensorDefinition(
                "default_automation_condition_sensor",
                target=dg.AssetSelection.all() - dg.AssetSelection.assets(sales_demo_data),
                minimum_interval_seconds=30,
                default_status=dg.DefaultSensorStatus.RUNNING,
                description="Materialises the assets whose automation condition asks for it (today the sales "
                "warehouse, after members or the demo data); the demo data has its own sensor, sales_demo_sensor.",
            ),
        ],
        resources={
            "zones": ZonesResource(),
            "sales_db": SalesDatabase(),
            "warehouse": Warehouse(),
        },
    ),
)
