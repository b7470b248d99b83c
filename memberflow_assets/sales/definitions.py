"""The sales domain's definitions: the operational database (written outside Dagster) and its observation,
the demo data with its job and sensor, and the team password audit."""

import dagster as dg

from memberflow_assets.sales.assets import sales_database, sales_demo_data
from memberflow_assets.sales.jobs import sales_demo_job
from memberflow_assets.sales.sensors import (
    sales_database_observation_sensor,
    sales_demo_sensor,
    team_password_audit_sensor,
)

defs = dg.Definitions(
    assets=[sales_database, sales_demo_data],
    jobs=[sales_demo_job],
    sensors=[sales_demo_sensor, team_password_audit_sensor, sales_database_observation_sensor],
)
