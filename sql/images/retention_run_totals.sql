-- A retention run's totals, from its rows in retention_purges: when it finishes, and for a run that
-- died when a later one (`reconciled_by`) has accounted for what it did.
UPDATE images.retention_runs AS r
SET partitions_purged = t.partitions_purged,
    objects_deleted = t.objects_deleted,
    bytes_deleted = t.bytes_deleted,
    registry_rows_purged = t.registry_rows_purged,
    dagster_runs_deleted = t.dagster_runs_deleted,
    finished_at = coalesce(%(finished_at)s, r.finished_at),
    reconciled_at = CASE WHEN %(reconciled_by)s::text IS NULL THEN r.reconciled_at ELSE now() END,
    reconciled_by = coalesce(%(reconciled_by)s, r.reconciled_by)
FROM (
    SELECT run.retention_run_id,
           count(p.hour_key) FILTER (WHERE p.state = 'done') AS partitions_purged,
           coalesce(sum(p.objects_deleted), 0) AS objects_deleted,
           coalesce(sum(p.bytes_deleted), 0) AS bytes_deleted,
           coalesce(sum(p.registry_rows_purged), 0) AS registry_rows_purged,
           coalesce(sum(p.dagster_runs_deleted), 0) AS dagster_runs_deleted
    FROM unnest(%(retention_run_ids)s::text[]) AS run(retention_run_id)
    LEFT JOIN images.retention_purges AS p USING (retention_run_id)
    GROUP BY run.retention_run_id
) AS t
WHERE r.retention_run_id = t.retention_run_id
