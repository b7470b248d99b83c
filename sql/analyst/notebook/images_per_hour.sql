-- Notebook chart "Images per hour": processed and rejected images per hour (UTC), all sources.
SELECT hour_start, status, images
FROM (
    SELECT hour_start, sum(processed) AS processed, sum(rejected) AS rejected
    FROM bi.images_per_hour
    GROUP BY hour_start
) UNPIVOT (images FOR status IN (processed, rejected))
ORDER BY hour_start, status
