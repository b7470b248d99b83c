-- Registry of every image the platform accepted: answers GET /v1/images/{id}, detects duplicates
-- (same client + same bytes = same image id), and records status changes by processing and retention.
-- After the 7-day purge only a tombstone remains (id, status 'purged', purged_at): client, sha256,
-- sizes and location are cleared, so nothing about the image outlives retention.
CREATE SCHEMA IF NOT EXISTS images;

CREATE TABLE images.registry (
    image_id      text PRIMARY KEY,
    status        text NOT NULL DEFAULT 'landed'
                  CHECK (status IN ('landed', 'processed', 'rejected', 'purged')),
    source        text CHECK (source IN ('api', 'kafka')),
    client        text,
    sha256        text,
    size_bytes    bigint CHECK (size_bytes > 0),
    content_type  text,
    received_at   timestamptz,
    hour_key      text,  -- yyyy-mm-dd-hh of received_at (UTC): the hourly partition
    landing_path  text,  -- zone-relative path of the image
    error         text,  -- why processing rejected it
    processed_at  timestamptz,
    purged_at     timestamptz,
    CHECK (status = 'purged' OR (client IS NOT NULL AND sha256 IS NOT NULL AND received_at IS NOT NULL))
);

CREATE UNIQUE INDEX registry_client_content ON images.registry (client, sha256) WHERE status <> 'purged';
CREATE INDEX registry_hour ON images.registry (hour_key) WHERE status <> 'purged';
