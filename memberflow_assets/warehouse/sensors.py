import dagster as dg

from memberflow_assets.warehouse.jobs import sales_warehouse_job

# Upstream assets materialised by Dagster itself: refresh right after them instead of waiting for the schedule.
UPSTREAM = (dg.AssetKey("members"), dg.AssetKey("sales_demo_data"))


@dg.sensor(
    job=sales_warehouse_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Refreshes the warehouse after members or the demo data were materialised (one run for "
    "everything new since the last tick). Cursor: the newest event storage id handled.",
)
def sales_warehouse_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    handled = int(context.cursor or 0)
    newest = handled
    for key in UPSTREAM:
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, after_storage_id=handled), limit=1
        ).records
        if records:
            newest = max(newest, records[0].storage_id)
    if newest == handled:
        return dg.SkipReason("no new materialisation of members or sales_demo_data")
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=f"upstream-{newest}")], cursor=str(newest))
