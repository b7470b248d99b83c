-- Sample analyst queries over the image BI views (warehouse schema `bi`, see docs/images.md).
-- Run one with:   .venv/bin/memberflow images-bi --sql "$(sed -n '/-- 1\./,/;/p' sql/images/analyst_queries.sql)"
-- or in any DuckDB session on the warehouse file (local zones; for S3 zones see docs/images.md).
-- Every view reads images/metadata/*.parquet: only the hours retention still keeps (7 days) show up.

-- 1. Volume per day and source: images, rejections, megabytes.
SELECT date_trunc('day', hour_start)::date AS day,
       source,
       sum(images) AS images,
       sum(rejected) AS rejected,
       round(sum(rejected) / sum(images), 4) AS rejection_rate,
       round(sum(bytes) / 1e6, 1) AS megabytes
FROM bi.images_per_hour
GROUP BY ALL
ORDER BY day, source;

-- 2. The ten busiest hours.
SELECT hour_start, sum(images) AS images, sum(bytes) AS bytes
FROM bi.images_per_hour
GROUP BY hour_start
ORDER BY images DESC, hour_start
LIMIT 10;

-- 3. Why images are rejected, over everything kept.
SELECT error, source, sum(rejected) AS rejected
FROM bi.image_rejections
GROUP BY ALL
ORDER BY rejected DESC, error, source;

-- 4. Hours whose rejection rate spiked above 5% (with at least 20 images).
SELECT hour_start, source, images, rejected, rejection_rate
FROM bi.images_per_hour
WHERE images >= 20 AND rejection_rate > 0.05
ORDER BY hour_start, source;

-- 5. Format mix per day, in percent of the day's processed images.
SELECT day,
       format,
       sum(images) AS images,
       round(100 * sum(images) / sum(sum(images)) OVER (PARTITION BY day), 1) AS percent
FROM bi.image_formats
GROUP BY day, format
ORDER BY day, images DESC;

-- 6. How big the images are: size classes with their share of the bytes.
SELECT size_class,
       sum(images) AS images,
       round(sum(bytes) / 1e9, 3) AS gigabytes,
       round(100 * sum(bytes) / sum(sum(bytes)) OVER (), 1) AS percent_of_bytes
FROM bi.image_sizes
GROUP BY size_class
ORDER BY size_class;

-- 7. Exact duplicates: the same bytes received more than once (any source, any hour).
SELECT sha256, count(*) AS copies, min(received_at) AS first_received, max(received_at) AS last_received
FROM bi.image_metadata
WHERE status = 'processed'
GROUP BY sha256
HAVING count(*) > 1
ORDER BY copies DESC, first_received
LIMIT 20;

-- 8. Near-duplicates within an hour: perceptual hashes (64-bit dHash) at most 4 bits apart.
SELECT a.hour_key,
       a.image_id AS image_a,
       b.image_id AS image_b,
       bit_count(xor(('0x' || a.phash)::ubigint, ('0x' || b.phash)::ubigint)) AS distance
FROM bi.image_metadata AS a
JOIN bi.image_metadata AS b ON a.hour_key = b.hour_key AND a.image_id < b.image_id
WHERE a.status = 'processed'
  AND b.status = 'processed'
  AND bit_count(xor(('0x' || a.phash)::ubigint, ('0x' || b.phash)::ubigint)) <= 4
ORDER BY distance, a.hour_key
LIMIT 50;

-- 9. How often location data had to be stripped, per source.
SELECT source, sum(gps_removed) AS with_location, sum(processed) AS processed,
       round(sum(gps_removed) / sum(processed), 4) AS share
FROM bi.images_per_hour
GROUP BY source
ORDER BY source;
