-- DuckDB: the demo transactions of the lines in table `demo_lines` (see demo_lines.sql): totals
-- from the lines, a creation time spread over [$first_day, $first_day + $days) and the status: the
-- last week is still pending, older transactions were completed 1-72 hours after creation.
WITH totals AS (
    SELECT membership_id, transaction_no,
           CAST(sum(quantity * unit_price) AS DECIMAL(14, 2)) AS total_price,
           CAST(sum(quantity * unit_weight_kg) AS DECIMAL(14, 3)) AS total_weight_kg
    FROM demo_lines
    GROUP BY ALL
),
timed AS (
    SELECT t.*,
           md5_number(concat($seed, '/', membership_id, '/', transaction_no, '/time')) AS h
    FROM totals t
),
stamped AS (
    SELECT membership_id, transaction_no, total_price, total_weight_kg,
           CAST($first_day AS TIMESTAMPTZ) + to_seconds(CAST(h % ($days * 86400) AS BIGINT)) AS created_at,
           to_hours(CAST(1 + (h >> 40) % 72 AS BIGINT)) AS time_to_complete
    FROM timed
)
SELECT membership_id, transaction_no, total_price, total_weight_kg, created_at,
       -- the last week of the period is still pending for logistics
       CASE WHEN created_at < CAST($first_day AS TIMESTAMPTZ) + to_days($days - 7) THEN 'completed' ELSE 'pending' END
           AS status,
       CASE WHEN created_at < CAST($first_day AS TIMESTAMPTZ) + to_days($days - 7)
            THEN created_at + time_to_complete END AS completed_at
FROM stamped
