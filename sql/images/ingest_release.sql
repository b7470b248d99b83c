-- Undo claims whose files could not be written: fresh rows go, revived tombstones are tombstones again.
-- Only rows still exactly as this landing claimed them (status 'landed', its received_at) are touched.
WITH deleted AS (
    DELETE FROM images.registry
    WHERE image_id = ANY(%(inserted)s) AND status = 'landed' AND received_at = %(received_at)s
)
UPDATE images.registry SET
    status = 'purged', source = NULL, client = NULL, sha256 = NULL, size_bytes = NULL, content_type = NULL,
    received_at = NULL, hour_key = NULL, landing_path = NULL, source_key = NULL, error = NULL,
    processed_at = NULL, purged_at = now()
WHERE image_id = ANY(%(revived)s) AND status = 'landed' AND received_at = %(received_at)s;
