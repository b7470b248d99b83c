-- Retention: an hour is purged; committed with its tombstones (retention.tombstone_hour).
UPDATE images.retention_purges
SET purged_at = %(purged_at)s, objects_deleted = %(objects_deleted)s, bytes_deleted = %(bytes_deleted)s,
    objects_by_zone = %(objects_by_zone)s, registry_rows_purged = %(registry_rows_purged)s,
    dagster_runs_deleted = %(dagster_runs_deleted)s, state = 'done', unaccounted = NULL
WHERE retention_run_id = %(retention_run_id)s AND hour_key = %(hour_key)s
