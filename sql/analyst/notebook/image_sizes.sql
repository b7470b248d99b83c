-- Notebook chart "Image sizes": processed images per size class (megapixels) and format.
SELECT size_class, format, sum(images) AS images
FROM bi.image_sizes
GROUP BY size_class, format
ORDER BY size_class, format
