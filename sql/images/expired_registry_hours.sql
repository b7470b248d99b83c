-- Retention: the hours (yyyy-mm-dd-hh, UTC) of registry rows older than the first kept hour.
SELECT DISTINCT coalesce(hour_key, to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD-HH24'))
FROM images.registry
WHERE status <> 'purged'
  AND (received_at < %(first_kept)s OR hour_key < %(first_kept_key)s)
