INSERT INTO images.retention_purges (retention_run_id, hour_key, purged_at, objects_deleted, bytes_deleted,
                                     objects_by_zone, registry_rows_purged, dagster_runs_deleted)
VALUES (%(retention_run_id)s, %(hour_key)s, %(purged_at)s, %(objects_deleted)s, %(bytes_deleted)s,
        %(objects_by_zone)s, %(registry_rows_purged)s, %(dagster_runs_deleted)s)
