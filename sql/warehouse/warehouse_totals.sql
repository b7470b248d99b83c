-- DuckDB: the same totals from fact_sales, leaving out the transactions changed in PostgreSQL since
-- the watermark (table changed_since_watermark): the warehouse holds an older version of those.
SELECT count(DISTINCT transaction_id), coalesce(sum(line_price), 0), coalesce(sum(line_weight_kg), 0)
FROM fact_sales
WHERE transaction_id NOT IN (SELECT transaction_id FROM changed_since_watermark)
