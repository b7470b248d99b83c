import dagster as dg

# One partition per hour of received_at (UTC), key `yyyy-mm-dd-hh` (layout.hour_key). Dynamic, so the
# landing sensor adds exactly the hours that received images and retention deletes expired ones:
# Dagster then shows only the hours the platform still holds.
image_hours = dg.DynamicPartitionsDefinition(name="image_hours")
