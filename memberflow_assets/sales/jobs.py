import dagster as dg

from memberflow_assets import postgres
from memberflow_assets.domains import domain_tags
from memberflow_assets.resources import SalesDatabase
from memberflow_assets.sales.assets import GROUP, sales_demo_data

sales_demo_job = dg.define_asset_job(
    "sales_demo",
    selection=dg.AssetSelection.assets(sales_demo_data),
    executor_def=dg.in_process_executor,
    tags=domain_tags(GROUP),
    description="Demo transactions for the members without any.",
)


@dg.op(description="Applies the migrations in sql/migrations/ the sales database lacks (as `memberflow migrate`).")
def apply_sales_migrations(context: dg.OpExecutionContext, sales_db: SalesDatabase) -> None:
    applied = postgres.apply_migrations(sales_db.unchecked_dsn())
    context.log.info("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))


@dg.job(
    name="migrate_sales_database",
    tags=domain_tags(GROUP),
    description="Brings the sales database's schema up to date. Run it after deploying code with new "
    "migrations when there is no pre-release migrate step (`memberflow migrate` does the same).",
)
def migrate_sales_database_job() -> None:
    apply_sales_migrations()
