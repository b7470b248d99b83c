-- Purged images leave nothing personal in the database's files (docs/images.md, "What remains where").
--
-- PostgreSQL never overwrites a row in place: an UPDATE or DELETE leaves the old version in the table's
-- and its indexes' pages, and VACUUM only marks that space free, it does not clear it. So an image's
-- client, content hash, path and producer key must never be in a row that is later updated or
-- deleted one by one. They now live in images.registry_details: written once per landing, one
-- partition per hour of received_at, and retention DROPs the hour's partition (its files are unlinked).
-- What stays long in images.registry_status — status, sizes, times, tombstones — is not personal; the
-- producer key is represented there by a digest of (client, key), like the image id is one of
-- (client, content), so that a key can be unique across hours.
--
-- images.registry stays what every reader and writer used: a view joining the two, writable through
-- INSTEAD OF triggers (images/ingestion/landing.py writes the tables directly, in one statement).

CREATE TABLE images.registry_details (
    hour_key     text NOT NULL,  -- yyyy-mm-dd-hh of received_at (UTC): the partition
    image_id     text NOT NULL,
    client       text NOT NULL,
    sha256       text NOT NULL,
    landing_path text,
    source_key   text,
    PRIMARY KEY (hour_key, image_id)
) PARTITION BY LIST (hour_key);

-- Column statistics would copy sampled values into pg_statistic: none for the personal columns.
ALTER TABLE images.registry_details
    ALTER COLUMN client SET STATISTICS 0, ALTER COLUMN sha256 SET STATISTICS 0,
    ALTER COLUMN landing_path SET STATISTICS 0, ALTER COLUMN source_key SET STATISTICS 0;

CREATE FUNCTION images.registry_details_partition_name(hour_key text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF hour_key IS NULL OR hour_key !~ '^\d{4}-\d{2}-\d{2}-\d{2}$' THEN
        RAISE EXCEPTION 'not an hour key (yyyy-mm-dd-hh): %', hour_key;
    END IF;
    RETURN 'registry_details_' || translate(hour_key, '-', '_');
END
$$;

-- The hour's partition, created when missing. CREATE + ATTACH takes only SHARE UPDATE EXCLUSIVE on
-- the parent (CREATE TABLE ... PARTITION OF would take ACCESS EXCLUSIVE and stall every landing).
CREATE FUNCTION images.create_registry_details_partition(hour_key text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    partition_name text := images.registry_details_partition_name(hour_key);
BEGIN
    IF to_regclass(format('images.%I', partition_name)) IS NOT NULL THEN
        RETURN;
    END IF;
    LOCK TABLE images.registry_details IN SHARE UPDATE EXCLUSIVE MODE;  -- one creator at a time
    IF to_regclass(format('images.%I', partition_name)) IS NOT NULL THEN
        RETURN;
    END IF;
    EXECUTE format('CREATE TABLE images.%I (LIKE images.registry_details INCLUDING DEFAULTS)', partition_name);
    EXECUTE format(
        'ALTER TABLE images.%I ALTER COLUMN client SET STATISTICS 0, ALTER COLUMN sha256 SET STATISTICS 0,'
        ' ALTER COLUMN landing_path SET STATISTICS 0, ALTER COLUMN source_key SET STATISTICS 0', partition_name);
    EXECUTE format('ALTER TABLE images.registry_details ATTACH PARTITION images.%I FOR VALUES IN (%L)',
                   partition_name, hour_key);
END
$$;

-- Retention: the hour's personal fields go with their files (and any dead row versions in them).
CREATE FUNCTION images.drop_registry_details_partition(hour_key text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DROP TABLE IF EXISTS images.%I', images.registry_details_partition_name(hour_key));
END
$$;

CREATE FUNCTION images.key_digest(client text, source_key text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT encode(sha256(convert_to(client || E'\n' || source_key, 'UTF8')), 'hex')
$$;

-- Move the personal fields of live images to their hours' partitions.
UPDATE images.registry SET hour_key = to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD-HH24')
WHERE status <> 'purged' AND hour_key IS NULL;
SELECT images.create_registry_details_partition(hour_key)
FROM (SELECT DISTINCT hour_key FROM images.registry WHERE status <> 'purged') AS hours;
INSERT INTO images.registry_details (hour_key, image_id, client, sha256, landing_path, source_key)
SELECT hour_key, image_id, client, sha256, landing_path, source_key FROM images.registry WHERE status <> 'purged';

-- What stays is the status table.
ALTER TABLE images.registry RENAME TO registry_status;
ALTER TABLE images.registry_status ADD COLUMN key_digest text;
UPDATE images.registry_status SET key_digest = images.key_digest(client, source_key)
WHERE status <> 'purged' AND source_key IS NOT NULL;
DROP TRIGGER registry_clear_source_key_on_purge ON images.registry_status;
DROP FUNCTION images.clear_source_key_on_purge();
ALTER TABLE images.registry_status
    DROP COLUMN client, DROP COLUMN sha256, DROP COLUMN landing_path, DROP COLUMN source_key,
    ADD CONSTRAINT registry_status_live_has_hour
        CHECK (status = 'purged' OR (received_at IS NOT NULL AND hour_key IS NOT NULL)),
    ALTER COLUMN key_digest SET STATISTICS 0;
CREATE UNIQUE INDEX registry_key_digest ON images.registry_status (key_digest)
    WHERE status <> 'purged' AND key_digest IS NOT NULL;

-- A tombstone keeps nothing but its id and when it was purged, whoever purges.
CREATE FUNCTION images.clear_tombstone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.source := NULL; NEW.size_bytes := NULL; NEW.content_type := NULL; NEW.received_at := NULL;
    NEW.hour_key := NULL; NEW.error := NULL; NEW.processed_at := NULL; NEW.key_digest := NULL;
    NEW.purged_at := coalesce(NEW.purged_at, now());
    RETURN NEW;
END
$$;
CREATE TRIGGER registry_status_clear_tombstone
    BEFORE INSERT OR UPDATE ON images.registry_status
    FOR EACH ROW WHEN (NEW.status = 'purged') EXECUTE FUNCTION images.clear_tombstone();

-- Rewrite the table (and its indexes) into new files: the dropped columns' values, and the old row
-- versions of every purge so far, leave the database's files (WAL aside).
CLUSTER images.registry_status USING registry_pkey;

CREATE VIEW images.registry AS
SELECT s.image_id, s.status, s.source, d.client, d.sha256, s.size_bytes, s.content_type, s.received_at,
       s.hour_key, d.landing_path, s.error, s.processed_at, s.purged_at, d.source_key
FROM images.registry_status AS s
LEFT JOIN images.registry_details AS d ON d.hour_key = s.hour_key AND d.image_id = s.image_id;
ALTER VIEW images.registry ALTER COLUMN status SET DEFAULT 'landed';

CREATE FUNCTION images.registry_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        DELETE FROM images.registry_details WHERE hour_key = OLD.hour_key AND image_id = OLD.image_id;
    END IF;
    IF TG_OP = 'DELETE' THEN
        DELETE FROM images.registry_status WHERE image_id = OLD.image_id;
        RETURN OLD;
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO images.registry_status
            (image_id, status, source, size_bytes, content_type, received_at, hour_key, error, processed_at, purged_at)
        VALUES (NEW.image_id, NEW.status, NEW.source, NEW.size_bytes, NEW.content_type, NEW.received_at,
                NEW.hour_key, NEW.error, NEW.processed_at, NEW.purged_at);
    ELSE
        UPDATE images.registry_status SET
            image_id = NEW.image_id, status = NEW.status, source = NEW.source, size_bytes = NEW.size_bytes,
            content_type = NEW.content_type, received_at = NEW.received_at, hour_key = NEW.hour_key,
            error = NEW.error, processed_at = NEW.processed_at, purged_at = NEW.purged_at
        WHERE image_id = OLD.image_id;
    END IF;
    UPDATE images.registry_status
    SET key_digest = CASE WHEN NEW.source_key IS NOT NULL THEN images.key_digest(NEW.client, NEW.source_key) END
    WHERE image_id = NEW.image_id AND status <> 'purged';
    IF NEW.status <> 'purged' THEN
        PERFORM images.create_registry_details_partition(NEW.hour_key);
        INSERT INTO images.registry_details (hour_key, image_id, client, sha256, landing_path, source_key)
        VALUES (NEW.hour_key, NEW.image_id, NEW.client, NEW.sha256, NEW.landing_path, NEW.source_key);
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER registry_write INSTEAD OF INSERT OR UPDATE OR DELETE ON images.registry
    FOR EACH ROW EXECUTE FUNCTION images.registry_write();

-- The registry rows of some image ids, reading only their hours' partitions. (The view's join reaches
-- every partition — fine for ad-hoc queries, not for a lookup per upload: landing.py uses this.) The
-- hours go into the query as constants, so the planner prunes the other partitions.
CREATE FUNCTION images.registry_rows(image_ids text[]) RETURNS SETOF images.registry
LANGUAGE plpgsql STABLE AS $$
DECLARE
    hours text[];
BEGIN
    SELECT coalesce(array_agg(DISTINCT hour_key), '{}') INTO hours
    FROM images.registry_status WHERE image_id = ANY(image_ids) AND hour_key IS NOT NULL;
    RETURN QUERY EXECUTE format(
        'SELECT s.image_id, s.status, s.source, d.client, d.sha256, s.size_bytes, s.content_type,'
        ' s.received_at, s.hour_key, d.landing_path, s.error, s.processed_at, s.purged_at, d.source_key'
        ' FROM images.registry_status AS s LEFT JOIN images.registry_details AS d'
        ' ON d.hour_key = s.hour_key AND d.image_id = s.image_id AND d.hour_key = ANY(%L::text[])'
        ' WHERE s.image_id = ANY($1)', hours)
    USING image_ids;
END
$$;
