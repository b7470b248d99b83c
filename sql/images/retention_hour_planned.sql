-- Retention, before deleting anything of an hour: what is there (see 0061). One row per run and hour.
INSERT INTO images.retention_purges (retention_run_id, hour_key, purged_at, objects_deleted, bytes_deleted,
                                     objects_by_zone, registry_rows_purged, dagster_runs_deleted, state, unaccounted)
VALUES (%(retention_run_id)s, %(hour_key)s, %(planned_at)s, 0, 0, '{}', 0, 0, 'deleting', %(unaccounted)s)
