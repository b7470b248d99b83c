UPDATE images.retention_runs
SET finished_at = %(finished_at)s,
    partitions_purged = %(partitions_purged)s,
    objects_deleted = %(objects_deleted)s,
    bytes_deleted = %(bytes_deleted)s,
    registry_rows_purged = %(registry_rows_purged)s,
    dagster_runs_deleted = %(dagster_runs_deleted)s
WHERE retention_run_id = %(retention_run_id)s
