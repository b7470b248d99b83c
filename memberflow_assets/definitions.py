"""The memberflow code location: every domain's assets, checks, jobs and sensors, and the resources."""

import dagster as dg

from memberflow_assets.images import assets as image_assets
from memberflow_assets.images import ingest_assets
from memberflow_assets.images.ingest_assets import kafka_image_ingest_job
from memberflow_assets.images.ingest_resources import KafkaImagesResource
from memberflow_assets.images.ingest_sensors import kafka_images_sensor
from memberflow_assets.images.jobs import (
    image_bi_views_job,
    image_processing_job,
    image_retention_audit,
    image_retention_compliance_job,
    image_retention_compliance_schedule,
    image_retention_job,
    image_retention_schedule,
    images_purged_within_7_days,
)
from memberflow_assets.images.sensors import landing_images_sensor
from memberflow_assets.membership import assets as membership_assets
from memberflow_assets.membership.jobs import membership_batch_job
from memberflow_assets.membership.sensors import landing_applications_sensor
from memberflow_assets.resources import SalesDatabase, ZonesResource
from memberflow_assets.sales import assets as sales_assets
from memberflow_assets.sales.assets import sales_demo_data
from memberflow_assets.sales.jobs import sales_demo_job
from memberflow_assets.sales.sensors import sales_demo_sensor, team_password_audit_sensor
from memberflow_assets.warehouse import assets as warehouse_assets
from memberflow_assets.warehouse.assets import sales_database
from memberflow_assets.warehouse.jobs import sales_warehouse_job, sales_warehouse_schedule
from memberflow_assets.warehouse.resources import Warehouse

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([membership_assets, ingest_assets, image_assets, sales_assets, warehouse_assets])
    + [image_retention_audit, sales_database],
    asset_checks=[
        *dg.load_asset_checks_from_modules([membership_assets, image_assets, warehouse_assets]),
        images_purged_within_7_days,
    ],
    jobs=[
        membership_batch_job,
        kafka_image_ingest_job,
        image_processing_job,
        image_bi_views_job,
        image_retention_job,
        image_retention_compliance_job,
        sales_demo_job,
        sales_warehouse_job,
    ],
    sensors=[
        landing_applications_sensor,
        kafka_images_sensor,
        landing_images_sensor,
        sales_demo_sensor,
        team_password_audit_sensor,
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
    schedules=[image_retention_schedule, image_retention_compliance_schedule, sales_warehouse_schedule],
    resources={
        "zones": ZonesResource(),
        "sales_db": SalesDatabase(),
        "kafka_images": KafkaImagesResource(),
        "warehouse": Warehouse(),
    },
)
