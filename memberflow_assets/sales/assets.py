"""The sales database as Dagster sees it: the operational tables, written outside Dagster, and the demo
transactions for the members the membership pipeline created (never needed in production)."""

import dagster as dg

from memberflow_assets.automation import AFTER_UPSTREAM_UPDATES
from memberflow_assets.resources import SalesDatabase
from memberflow_assets.sales.demo_data import DemoSpec, seed_demo_sales
from memberflow_assets.sales.observation import sales_data_version

GROUP = "sales"


# The operational tables, written outside Dagster: the shop's transactions, the sales team's
# catalogue, logistics' status changes (and, in the demo, sales_demo_data). Observed, so that the
# warehouse's automation follows what they write (sales_database_observation_sensor records each change).
@dg.observable_source_asset(
    group_name=GROUP,
    tags={"dagster/kind/postgres": ""},
    description="PostgreSQL schema sales: manufacturers, items, transactions, transaction_lines - written by "
    "the shop and the teams, not by Dagster. Its data version changes with every transaction written or "
    "updated and every change of the catalogue (observed every 5 minutes by "
    "sales_database_observation_sensor).",
)
def sales_database(sales_db: SalesDatabase) -> dg.DataVersion:
    with sales_db.connect() as connection:
        return dg.DataVersion(sales_data_version(connection))


class SalesDemoConfig(dg.Config):
    seed: int = DemoSpec.seed
    transactions_per_member: int = DemoSpec.transactions_per_member


@dg.asset(
    deps=["members"],
    group_name=GROUP,
    kinds={"postgres"},
    automation_condition=AFTER_UPSTREAM_UPDATES,
    description="Demo only: a deterministic catalogue (once) and transactions for every member without any. "
    "Materialised after members by sales_demo_sensor, an automation condition sensor running when "
    "MEMBERFLOW_SALES_DEMO=1 (memberflow start).",
)
def sales_demo_data(
    context: dg.AssetExecutionContext, config: SalesDemoConfig, sales_db: SalesDatabase
) -> dg.MaterializeResult:
    spec = DemoSpec(seed=config.seed, transactions_per_member=config.transactions_per_member)
    with sales_db.connect() as connection:
        result = seed_demo_sales(connection, spec)
    context.log.info(
        f"{result.transactions_created} demo transactions for {result.members_served} member(s) without any"
    )
    return dg.MaterializeResult(
        metadata={
            "manufacturers_created": result.manufacturers_created,
            "items_created": result.items_created,
            "members_served": result.members_served,
            "transactions_created": result.transactions_created,
            "lines_created": result.lines_created,
        }
    )
