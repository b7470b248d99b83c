-- Claim an image id for a new landing: insert its registry row, or revive the tombstone a purge left.
-- Returns a row only when this call claimed it (`inserted` false = a revived tombstone); no row means
-- the image is already registered (a duplicate). One statement, so two concurrent uploads of the same
-- bytes cannot both claim it: the second waits on the first's row and then finds it taken.
INSERT INTO images.registry AS r
    (image_id, status, source, client, sha256, size_bytes, content_type, received_at, hour_key,
     landing_path, source_key)
VALUES
    (%(image_id)s, 'landed', %(source)s, %(client)s, %(sha256)s, %(size_bytes)s, %(content_type)s,
     %(received_at)s, %(hour_key)s, %(landing_path)s, %(source_key)s)
ON CONFLICT (image_id) DO UPDATE SET
    status = 'landed', source = EXCLUDED.source, client = EXCLUDED.client, sha256 = EXCLUDED.sha256,
    size_bytes = EXCLUDED.size_bytes, content_type = EXCLUDED.content_type,
    received_at = EXCLUDED.received_at, hour_key = EXCLUDED.hour_key,
    landing_path = EXCLUDED.landing_path, source_key = EXCLUDED.source_key,
    error = NULL, processed_at = NULL, purged_at = NULL
WHERE r.status = 'purged'
RETURNING (xmax = 0) AS inserted;
