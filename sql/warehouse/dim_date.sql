-- DuckDB: every day from 1 January of the year of the first sale (or this year) to 31 December of
-- the year after the last sale (or after this year), so today's and tomorrow's sales always have a day.
DELETE FROM dim_date;

INSERT INTO dim_date
WITH bounds AS (
    SELECT make_date(coalesce(min(date_key) // 10000, year(current_date)), 1, 1) AS first_day,
           make_date(greatest(coalesce(max(date_key) // 10000, 0), year(current_date)) + 1, 12, 31) AS last_day
    FROM fact_sales
),
days AS (
    SELECT CAST(d AS DATE) AS d
    FROM bounds, range(first_day, last_day + INTERVAL 1 DAY, INTERVAL 1 DAY) AS t(d)
)
SELECT
    year(d) * 10000 + month(d) * 100 + day(d) AS date_key,
    d AS date,
    year(d) AS year,
    quarter(d) AS quarter,
    month(d) AS month,
    monthname(d) AS month_name,
    day(d) AS day,
    weekofyear(d) AS iso_week,
    isodow(d) AS day_of_week,
    dayname(d) AS day_name,
    isodow(d) >= 6 AS is_weekend
FROM days
ORDER BY d;
