-- Claim image ids for new landings, a batch at a time (arrays of equal length, one element per image):
-- insert each registry row, or revive the tombstone a purge left. Returns a row per id this statement
-- claimed (`inserted` false = a revived tombstone); an id without a row is already registered (a
-- duplicate) or its producer key is taken by another image of the same client (a key conflict). One
-- statement, so two concurrent landings of the same bytes cannot both claim an id: the second waits
-- on the first's row and then finds it taken.
INSERT INTO images.registry AS r
    (image_id, status, source, client, sha256, size_bytes, content_type, received_at, hour_key,
     landing_path, source_key)
SELECT v.image_id, 'landed', v.source, v.client, v.sha256, v.size_bytes, v.content_type, v.received_at,
       v.hour_key, v.landing_path, v.source_key
FROM unnest(
    %(image_id)s::text[], %(source)s::text[], %(client)s::text[], %(sha256)s::text[],
    %(size_bytes)s::bigint[], %(content_type)s::text[], %(received_at)s::timestamptz[],
    %(hour_key)s::text[], %(landing_path)s::text[], %(source_key)s::text[]
) AS v(image_id, source, client, sha256, size_bytes, content_type, received_at, hour_key, landing_path,
       source_key)
WHERE v.source_key IS NULL OR NOT EXISTS (
    SELECT 1 FROM images.registry taken
    WHERE taken.client = v.client AND taken.source_key = v.source_key AND taken.status <> 'purged'
      AND taken.image_id <> v.image_id
)
ON CONFLICT (image_id) DO UPDATE SET
    status = 'landed', source = EXCLUDED.source, client = EXCLUDED.client, sha256 = EXCLUDED.sha256,
    size_bytes = EXCLUDED.size_bytes, content_type = EXCLUDED.content_type,
    received_at = EXCLUDED.received_at, hour_key = EXCLUDED.hour_key,
    landing_path = EXCLUDED.landing_path, source_key = EXCLUDED.source_key,
    error = NULL, processed_at = NULL, purged_at = NULL
WHERE r.status = 'purged'
RETURNING r.image_id, (r.xmax = 0) AS inserted;
