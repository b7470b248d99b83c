"""The sales star schema and the BI views in the DuckDB warehouse, and their checks.

One multi-asset refreshes all tables together (`refresh.refresh_warehouse`): they are published as
one new version of the file, with every view, so analysts never see facts that are newer than their
dimensions, nor a version without some of the views.
"""

from datetime import timedelta

import dagster as dg

from memberflow_assets import column_schemas
from memberflow_assets.automation import AFTER_UPSTREAM_UPDATES
from memberflow_assets.resources import SalesDatabase
from memberflow_assets.sales.assets import sales_database
from memberflow_assets.warehouse import checks
from memberflow_assets.warehouse.refresh import refresh_warehouse
from memberflow_assets.warehouse.resources import Warehouse
from memberflow_assets.zones import Zones

GROUP = "warehouse"

# Analysts rely on it: refreshed every 15 minutes, so one missed refresh shows as overdue in the UI.
WAREHOUSE_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(minutes=30))


TABLE_SCHEMAS = column_schemas.warehouse_tables()


def published_together(spec: dg.AssetSpec) -> dg.AssetSpec:
    """A spec of the warehouse's multi-asset with its freshness policy, its automation (after members or the
    demo data; the 15-minute schedule picks up what the shop writes) and, for a table, its columns."""
    spec = spec.replace_attributes(freshness_policy=WAREHOUSE_FRESHNESS, automation_condition=AFTER_UPSTREAM_UPDATES)
    schema = TABLE_SCHEMAS.get(spec.key.to_user_string())
    return column_schemas.with_column_schema(spec, schema) if schema else spec


class WarehouseRefreshConfig(dg.Config):
    full_refresh: bool = False  # rebuild everything instead of loading the changed transactions only


@dg.multi_asset(
    group_name=GROUP,
    can_subset=False,
    specs=[
        published_together(spec)
        for spec in (
            dg.AssetSpec(
                "dim_member",
                deps=["members"],
                kinds={"duckdb"},
                description="Members without contact data (sales.member_profiles): name, birth year, batch, since.",
            ),
            dg.AssetSpec(
                "dim_item",
                deps=[sales_database, "sales_demo_data"],
                kinds={"duckdb"},
                description="Every item ever in the catalogue with its manufacturer, current cost and weight.",
            ),
            dg.AssetSpec("dim_date", kinds={"duckdb"}, description="Calendar days covering every sale (UTC)."),
            dg.AssetSpec(
                "fact_sales",
                deps=[sales_database, "sales_demo_data", "dim_member", "dim_item", "dim_date"],
                kinds={"duckdb"},
                description="One row per transaction line, with the price and weight at the time of sale. "
                "Refreshed incrementally: transactions written since the last refresh replace their rows.",
            ),
            dg.AssetSpec(
                "fact_transactions",
                deps=["fact_sales"],
                kinds={"duckdb"},
                description="One row per transaction (member, day, status, lines, units, totals): the grain of the "
                "per-transaction, per-member and per-day views. Refreshed with fact_sales.",
            ),
            dg.AssetSpec(
                "application_outcomes",
                deps=["successful_applications", "unsuccessful_applications"],
                kinds={"duckdb"},
                description="Outcome and rejection reasons of every membership application (no personal data).",
            ),
            dg.AssetSpec(
                "bi_views",
                deps=["fact_sales", "fact_transactions", "application_outcomes"],
                kinds={"duckdb"},
                description="Schema bi: top_members_by_spending, top_items_by_purchases, sales_per_day, "
                "transaction_weights, membership_applications_by_outcome (sql/warehouse/bi_views.sql). Every "
                "published version also carries the image views (image_bi_views).",
            ),
        )
    ],
)
def sales_warehouse(
    context: dg.AssetExecutionContext,
    config: WarehouseRefreshConfig,
    zones: dg.ResourceParam[Zones],
    sales_db: SalesDatabase,
    warehouse: Warehouse,
):
    result = refresh_warehouse(sales_db.get_dsn(), warehouse.path, zones, full=config.full_refresh)
    context.log.info(
        f"{result.mode} refresh: {result.transactions_loaded} transactions / {result.lines_loaded} lines loaded "
        f"in {result.seconds:.1f} s; published {result.path}"
    )
    refreshed = {
        "mode": result.mode,
        "changed_since": str(result.changed_since) if result.changed_since else "(full)",
        "watermark": str(result.watermark),
        "path": dg.MetadataValue.path(result.path),
    }
    rows = {
        "dim_member": {"rows": result.members},
        "dim_item": {"rows": result.items},
        "dim_date": {"rows": result.dates},
        "fact_sales": {
            "rows": result.fact_rows,
            "transactions_loaded": result.transactions_loaded,
            "lines_loaded": result.lines_loaded,
            "seconds": round(result.seconds, 2),
        },
        "fact_transactions": {"rows": result.fact_transaction_rows},
        "application_outcomes": {"rows": result.applications},
        "bi_views": {},
    }
    for asset, metadata in rows.items():
        yield dg.MaterializeResult(asset_key=asset, metadata={**refreshed, **metadata})


@dg.asset_check(
    asset="fact_sales",
    blocking=True,
    description="Every fact row has its member, item and date in the dimensions, no line is there twice, and "
    "fact_transactions holds each transaction of fact_sales once, with totals equal to its lines.",
)
def fact_sales_referential_integrity(warehouse: Warehouse) -> dg.AssetCheckResult:
    with warehouse.open_read_only() as connection:
        problems = checks.referential_integrity(connection)
    return dg.AssetCheckResult(passed=not any(problems.values()), metadata=problems)


@dg.asset_check(
    asset="fact_sales",
    blocking=True,
    description="Transaction count, total price and total weight in fact_sales equal PostgreSQL's for every "
    "transaction unchanged since the refresh's watermark.",
)
def fact_sales_reconciles_with_postgres(warehouse: Warehouse, sales_db: SalesDatabase) -> dg.AssetCheckResult:
    with warehouse.open_read_only() as connection:
        result = checks.reconcile_with_postgres(connection, sales_db.get_dsn())
    return dg.AssetCheckResult(
        passed=result.matches,
        metadata={
            "postgres_transactions": result.postgres.transactions,
            "warehouse_transactions": result.warehouse.transactions,
            "postgres_total_price": float(result.postgres.price),
            "warehouse_total_price": float(result.warehouse.price),
            "postgres_total_weight_kg": float(result.postgres.weight_kg),
            "warehouse_total_weight_kg": float(result.warehouse.weight_kg),
            "changed_since_watermark": result.changed_since_watermark,
        },
    )
