-- Undo claims whose files could not be written: fresh rows go, revived tombstones are tombstones again,
-- and their personal fields go. Only rows still exactly as this landing claimed them (status 'landed',
-- its received_at) are touched.
WITH released AS (
    SELECT image_id, hour_key FROM images.registry_status
    WHERE image_id = ANY(%(inserted)s || %(revived)s) AND status = 'landed' AND received_at = %(received_at)s
),
details AS (
    DELETE FROM images.registry_details d USING released
    WHERE d.hour_key = released.hour_key AND d.image_id = released.image_id
),
deleted AS (
    DELETE FROM images.registry_status
    WHERE image_id = ANY(%(inserted)s) AND image_id IN (SELECT image_id FROM released)
)
UPDATE images.registry_status SET status = 'purged', purged_at = now()  -- the trigger clears the rest
WHERE image_id = ANY(%(revived)s) AND image_id IN (SELECT image_id FROM released);
