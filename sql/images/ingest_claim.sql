-- Claim image ids for new landings, a batch at a time (arrays of equal length, one element per image):
-- insert each status row, or revive the tombstone a purge left, and write the image's personal fields
-- to its hour's partition of registry_details (which must exist: see 0060). Returns a row per id this
-- statement claimed (`inserted` false = a revived tombstone); an id without a row is already
-- registered (a duplicate) or its producer key is taken by another image of the same client (a key
-- conflict). One statement, so two concurrent landings of the same bytes cannot both claim an id: the
-- second waits on the first's row and then finds it taken.
WITH v AS (
    SELECT * FROM unnest(
        %(image_id)s::text[], %(source)s::text[], %(client)s::text[], %(sha256)s::text[],
        %(size_bytes)s::bigint[], %(content_type)s::text[], %(received_at)s::timestamptz[],
        %(hour_key)s::text[], %(landing_path)s::text[], %(source_key)s::text[], %(key_digest)s::text[]
    ) AS v(image_id, source, client, sha256, size_bytes, content_type, received_at, hour_key, landing_path,
           source_key, key_digest)
),
claimed AS (
    INSERT INTO images.registry_status AS r
        (image_id, status, source, size_bytes, content_type, received_at, hour_key, key_digest)
    SELECT v.image_id, 'landed', v.source, v.size_bytes, v.content_type, v.received_at, v.hour_key, v.key_digest
    FROM v
    WHERE v.key_digest IS NULL OR NOT EXISTS (
        SELECT 1 FROM images.registry_status taken
        WHERE taken.key_digest = v.key_digest AND taken.status <> 'purged' AND taken.image_id <> v.image_id
    )
    ON CONFLICT (image_id) DO UPDATE SET
        status = 'landed', source = EXCLUDED.source, size_bytes = EXCLUDED.size_bytes,
        content_type = EXCLUDED.content_type, received_at = EXCLUDED.received_at, hour_key = EXCLUDED.hour_key,
        key_digest = EXCLUDED.key_digest, error = NULL, processed_at = NULL, purged_at = NULL
    WHERE r.status = 'purged'
    RETURNING r.image_id, (r.xmax = 0) AS inserted
),
details AS (
    INSERT INTO images.registry_details (hour_key, image_id, client, sha256, landing_path, source_key)
    SELECT v.hour_key, v.image_id, v.client, v.sha256, v.landing_path, v.source_key
    FROM v JOIN claimed USING (image_id)
)
SELECT image_id, inserted FROM claimed;
