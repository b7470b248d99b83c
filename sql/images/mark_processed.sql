-- Record processing outcomes in the registry: one VALUES row per image of the hour (psycopg2
-- execute_values fills in the VALUES). Rows already up to date are not rewritten; tombstones are never revived.
-- Returns how many rows changed, and the ids that have no registry row (e.g. not inserted yet: a
-- later run of the hour records them).
WITH outcome (image_id, status, processed_at, error) AS (VALUES %s),
changed AS (
    UPDATE images.registry_status AS registry
    SET status = outcome.status,
        processed_at = outcome.processed_at::timestamptz,
        error = outcome.error
    FROM outcome
    WHERE registry.image_id = outcome.image_id
      AND registry.status <> 'purged'
      AND (registry.status, registry.processed_at, registry.error)
          IS DISTINCT FROM (outcome.status, outcome.processed_at::timestamptz, outcome.error)
    RETURNING registry.image_id
)
SELECT (SELECT count(*) FROM changed),
       array(SELECT outcome.image_id FROM outcome
             LEFT JOIN images.registry_status AS registry USING (image_id)
             WHERE registry.image_id IS NULL)
