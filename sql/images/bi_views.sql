-- Image BI: views in the warehouse's `bi` schema over images/metadata/<hour>.parquet (never copies),
-- so an hour purged by retention disappears from every view with its file.
-- `{union_metadata_files}` is replaced by memberflow_assets/images/processing/bi.py: `UNION ALL BY NAME` the
-- metadata files (a quoted path or s3:// glob) when there are any, else nothing. The typed empty row
-- keeps the views' columns when no metadata file exists (a new deployment, or everything purged).
-- (Not `read_parquet(..., allow_empty = true)`: the DuckDB 1.5 shell analysts use cannot bind it.)
-- Not exposed: the API client name, error details and thumbnail paths.
CREATE SCHEMA IF NOT EXISTS bi;

CREATE OR REPLACE VIEW bi.image_metadata AS
SELECT
    image_id,
    hour_key,
    strptime(hour_key, '%Y-%m-%d-%H') AS hour_start,  -- UTC
    source,
    received_at,
    processed_at,
    status,
    error,
    format,
    mode,
    width,
    height,
    width::bigint * height AS pixels,
    orientation,
    bytes,
    sha256,
    phash,
    gps_removed,
    thumbnail_bytes
FROM (
    SELECT
        NULL::varchar AS image_id, NULL::varchar AS hour_key, NULL::varchar AS source,
        NULL::timestamptz AS received_at, NULL::timestamptz AS processed_at, NULL::varchar AS status,
        NULL::varchar AS error, NULL::varchar AS format, NULL::varchar AS mode, NULL::integer AS width,
        NULL::integer AS height, NULL::smallint AS orientation, NULL::bigint AS bytes,
        NULL::varchar AS sha256, NULL::varchar AS phash, NULL::boolean AS gps_removed,
        NULL::integer AS thumbnail_bytes
    WHERE false
    {union_metadata_files}
);

-- Images, bytes and rejections per hour and source.
CREATE OR REPLACE VIEW bi.images_per_hour AS
SELECT
    hour_start,
    source,
    count(*) AS images,
    count(*) FILTER (WHERE status = 'processed') AS processed,
    count(*) FILTER (WHERE status = 'rejected') AS rejected,
    round(count(*) FILTER (WHERE status = 'rejected') / count(*), 4) AS rejection_rate,
    sum(bytes) AS bytes,
    round(avg(bytes)) AS avg_bytes,
    count(*) FILTER (WHERE gps_removed) AS gps_removed
FROM bi.image_metadata
GROUP BY ALL;

-- Why images were rejected, per hour and source. share_of_images: of all that hour's images from that source.
CREATE OR REPLACE VIEW bi.image_rejections AS
SELECT
    hour_start,
    source,
    error,
    rejected,
    round(rejected / images, 4) AS share_of_images
FROM (
    SELECT
        hour_start,
        source,
        error,
        count(*) FILTER (WHERE status = 'rejected') AS rejected,
        sum(count(*)) OVER (PARTITION BY hour_start, source) AS images
    FROM bi.image_metadata
    GROUP BY hour_start, source, error
)
WHERE rejected > 0;

-- Formats and pixel modes per day: counts, bytes, dimensions (processed images only).
CREATE OR REPLACE VIEW bi.image_formats AS
SELECT
    date_trunc('day', hour_start)::date AS day,
    format,
    mode,
    count(*) AS images,
    sum(bytes) AS bytes,
    round(avg(bytes)) AS avg_bytes,
    round(avg(width)) AS avg_width,
    round(avg(height)) AS avg_height,
    max(width) AS max_width,
    max(height) AS max_height
FROM bi.image_metadata
WHERE status = 'processed'
GROUP BY ALL;

-- Size classes (megapixels) per day and format: how big the images are, and what they weigh.
CREATE OR REPLACE VIEW bi.image_sizes AS
SELECT
    date_trunc('day', hour_start)::date AS day,
    format,
    CASE
        WHEN pixels < 500000 THEN '1: < 0.5 MP'
        WHEN pixels < 2000000 THEN '2: 0.5-2 MP'
        WHEN pixels < 8000000 THEN '3: 2-8 MP'
        WHEN pixels < 24000000 THEN '4: 8-24 MP'
        ELSE '5: >= 24 MP'
    END AS size_class,
    count(*) AS images,
    sum(bytes) AS bytes,
    round(median(bytes)) AS median_bytes,
    round(sum(bytes) / sum(pixels), 3) AS bytes_per_pixel
FROM bi.image_metadata
WHERE status = 'processed'
GROUP BY ALL;
