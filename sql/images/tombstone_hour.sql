-- Retention: every registry row of one expired hour becomes a tombstone (id, status 'purged',
-- purged_at); everything else about the image is cleared (see 0002_image_registry.sql).
UPDATE images.registry
SET status = 'purged',
    purged_at = %(purged_at)s,
    source = NULL,
    client = NULL,
    sha256 = NULL,
    size_bytes = NULL,
    content_type = NULL,
    received_at = NULL,
    hour_key = NULL,
    landing_path = NULL,
    error = NULL,
    processed_at = NULL,
    source_key = NULL
WHERE status <> 'purged'
  AND (hour_key = %(hour_key)s
       OR (hour_key IS NULL AND received_at >= %(hour_start)s AND received_at < %(hour_end)s))
