-- Undo claims whose files could not be written (arrays of equal length, one element per claim): fresh
-- rows go, revived tombstones are tombstones again, and their personal fields go. Only rows still
-- exactly as this landing claimed them (status 'landed', its received_at) are touched.
WITH claims AS (
    SELECT * FROM unnest(%(image_id)s::text[], %(inserted)s::boolean[], %(received_at)s::timestamptz[])
        AS c(image_id, inserted, received_at)
),
released AS (
    SELECT s.image_id, s.hour_key, c.inserted FROM images.registry_status s JOIN claims c USING (image_id)
    WHERE s.status = 'landed' AND s.received_at = c.received_at
),
details AS (
    DELETE FROM images.registry_details d USING released
    WHERE d.hour_key = released.hour_key AND d.image_id = released.image_id
),
deleted AS (
    DELETE FROM images.registry_status
    WHERE image_id IN (SELECT image_id FROM released WHERE inserted)
)
UPDATE images.registry_status SET status = 'purged', purged_at = now()  -- the trigger clears the rest
WHERE image_id IN (SELECT image_id FROM released WHERE NOT inserted);
