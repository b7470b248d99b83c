INSERT INTO images.retention_runs (retention_run_id, trigger, as_of, first_kept_hour, started_at)
VALUES (%(retention_run_id)s, %(trigger)s, %(as_of)s, %(first_kept_hour)s, %(started_at)s)
