"""The memberflow code location: every domain's definitions, the shared resources and Dagster's default
automation sensor, built from the Settings read here — the one reading of the environment when Dagster
loads the code location."""

import dagster as dg

from memberflow_assets.images import definitions as images
from memberflow_assets.membership import definitions as membership
from memberflow_assets.resources import SalesDatabase, ZonesResource
from memberflow_assets.sales import definitions as sales
from memberflow_assets.sales.assets import sales_demo_data
from memberflow_assets.settings import Settings
from memberflow_assets.warehouse import definitions as warehouse
from memberflow_assets.warehouse.resources import Warehouse


def build_defs(settings: Settings) -> dg.Definitions:
    """The code location configured by `settings`."""
    return dg.Definitions.merge(
        membership.build_defs(settings),
        images.build_defs(settings),
        sales.build_defs(settings),
        warehouse.defs,
        dg.Definitions(
            sensors=[
                # Dagster's default automation sensor, running: every asset's automation condition but the demo's
                dg.AutomationConditionSensorDefinition(
                    "default_automation_condition_sensor",
                    target=dg.AssetSelection.all() - dg.AssetSelection.assets(sales_demo_data),
                    minimum_interval_seconds=30,
                    default_status=dg.DefaultSensorStatus.RUNNING,
                    description="Materialises the assets whose automation condition asks for it: the sales warehouse "
                    "(after members, the demo data or a new observation of sales_database) and image_bi_views "
                    "(after a processed hour or a purge, or a new view SQL); the demo data has its own sensor, "
                    "sales_demo_sensor.",
                ),
            ],
            resources={
                "zones": ZonesResource.from_settings(settings),
                # the DSN as the variable it comes from: the UI must not show its password
                "sales_db": SalesDatabase.from_settings(settings, dsn_as_env_var=True),
                "warehouse": Warehouse(path=settings.warehouse),
            },
        ),
    )


# The one Definitions object at module scope (Dagster refuses a module with more than one), from the
# environment of the process loading the code location.
defs = build_defs(Settings.from_env())
