"""The membership domain's definitions: the application pipeline's assets and checks, its job and the
landing sensor."""

import dagster as dg

from memberflow_assets.membership import assets
from memberflow_assets.membership.jobs import membership_batch_job
from memberflow_assets.membership.sensors import build_landing_applications_sensor
from memberflow_assets.settings import Settings


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        assets=dg.load_assets_from_modules([assets]),
        asset_checks=dg.load_asset_checks_from_modules([assets]),
        jobs=[membership_batch_job],
        sensors=[build_landing_applications_sensor(settings)],
    )
