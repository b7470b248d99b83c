-- Retention: the hours (yyyy-mm-dd-hh, UTC) older than the first kept hour that the database still
-- holds something of: live registry rows, or a partition of registry_details. Each branch is a range
-- on one of the registry's partial indexes (live rows only), so tombstones never cost anything.
SELECT coalesce(hour_key, to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD-HH24'))
FROM images.registry_status
WHERE status <> 'purged' AND received_at < %(first_kept)s
UNION
SELECT hour_key
FROM images.registry_status
WHERE status <> 'purged' AND hour_key < %(first_kept_key)s
UNION
SELECT hours.hour_key
FROM pg_inherits
JOIN pg_class AS partition ON partition.oid = pg_inherits.inhrelid,
LATERAL (SELECT translate(substr(partition.relname, length('registry_details_') + 1), '_', '-') AS hour_key) AS hours
WHERE pg_inherits.inhparent = 'images.registry_details'::regclass AND hours.hour_key < %(first_kept_key)s
