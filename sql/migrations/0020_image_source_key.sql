-- Kafka ingestion: the producer's own image id (the message key) is a second identity of an image.
-- A redelivered message has the same key and the same bytes and lands nothing new; a *different* image
-- sent under a key this source already used is a conflict (quarantined by the consumer) rather than a
-- silent second image. Optional column: API uploads leave it NULL.
ALTER TABLE images.registry ADD COLUMN source_key text;

CREATE UNIQUE INDEX registry_client_source_key ON images.registry (client, source_key)
    WHERE status <> 'purged' AND source_key IS NOT NULL;

-- A tombstone keeps nothing about the image (0002): whoever purges a row, its producer key goes too.
CREATE FUNCTION images.clear_source_key_on_purge() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.source_key := NULL;
    RETURN NEW;
END
$$;

CREATE TRIGGER registry_clear_source_key_on_purge
    BEFORE UPDATE ON images.registry
    FOR EACH ROW WHEN (NEW.status = 'purged' AND NEW.source_key IS NOT NULL)
    EXECUTE FUNCTION images.clear_source_key_on_purge();
