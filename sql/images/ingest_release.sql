-- Undo a claim whose files could not be written: a fresh row goes, a revived tombstone is a tombstone again.
WITH claimed AS (
    SELECT image_id FROM images.registry
    WHERE image_id = %(image_id)s AND status = 'landed' AND received_at = %(received_at)s
), deleted AS (
    DELETE FROM images.registry WHERE image_id IN (SELECT image_id FROM claimed) AND %(inserted)s
)
UPDATE images.registry SET
    status = 'purged', source = NULL, client = NULL, sha256 = NULL, size_bytes = NULL, content_type = NULL,
    received_at = NULL, hour_key = NULL, landing_path = NULL, error = NULL, processed_at = NULL,
    purged_at = now()
WHERE image_id IN (SELECT image_id FROM claimed) AND NOT %(inserted)s;
