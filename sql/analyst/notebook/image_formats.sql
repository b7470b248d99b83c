-- Notebook chart "Image formats": processed images and megabytes per format, over everything kept.
SELECT format, sum(images) AS images, round(sum(bytes) / 1e6, 3) AS megabytes
FROM bi.image_formats
GROUP BY format
ORDER BY images DESC, format
