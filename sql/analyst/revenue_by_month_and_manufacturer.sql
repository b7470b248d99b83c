-- Sample analyst query (DuckDB warehouse): revenue and units per month and manufacturer,
-- completed transactions only.
SELECT
    d.year,
    d.month_name AS month,
    i.manufacturer_name,
    count(DISTINCT f.transaction_id) AS transactions,
    sum(f.quantity) AS units,
    sum(f.line_price) AS revenue
FROM fact_sales f
JOIN dim_date d USING (date_key)
JOIN dim_item i USING (item_id)
WHERE f.status = 'completed'
GROUP BY d.year, d.month, d.month_name, i.manufacturer_name
ORDER BY d.year, d.month, revenue DESC
