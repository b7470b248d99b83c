"""The sales domain's definitions: the operational database (written outside Dagster) and its observation,
the demo data with its job and sensor, the team password audit, and the job that migrates the database."""

import dagster as dg

from memberflow_assets.sales.assets import sales_database, sales_demo_data
from memberflow_assets.sales.jobs import migrate_sales_database_job, sales_demo_job
from memberflow_assets.sales.sensors import (
    build_sales_demo_sensor,
    sales_database_observation_sensor,
    team_password_audit_sensor,
)
from memberflow_assets.settings import Settings


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        assets=[sales_database, sales_demo_data],
        jobs=[sales_demo_job, migrate_sales_database_job],
        sensors=[build_sales_demo_sensor(settings), team_password_audit_sensor, sales_database_observation_sensor],
    )
