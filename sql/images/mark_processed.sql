-- Record processing outcomes in the registry: one VALUES row per image (psycopg2 execute_values).
-- Tombstones are never revived. Returns the ids it updated, so missing registry rows can be reported.
UPDATE images.registry AS registry
SET status = outcome.status,
    processed_at = outcome.processed_at::timestamptz,
    error = outcome.error
FROM (VALUES %s) AS outcome (image_id, status, processed_at, error)
WHERE registry.image_id = outcome.image_id
  AND registry.status <> 'purged'
RETURNING registry.image_id
