-- DuckDB: rows of the facts that break the star schema's integrity (all zero = good).
WITH line_totals AS (
    SELECT transaction_id, count(*) AS lines, sum(line_price) AS price, sum(line_weight_kg) AS weight_kg
    FROM fact_sales
    GROUP BY transaction_id
)
SELECT
    (SELECT count(*) FROM fact_sales f WHERE NOT EXISTS (SELECT 1 FROM dim_member m WHERE m.member_key = f.member_key))
        AS facts_without_member,
    (SELECT count(*) FROM fact_sales f WHERE NOT EXISTS (SELECT 1 FROM dim_item i WHERE i.item_id = f.item_id))
        AS facts_without_item,
    (SELECT count(*) FROM fact_sales f WHERE NOT EXISTS (SELECT 1 FROM dim_date d WHERE d.date_key = f.date_key))
        AS facts_without_date,
    (SELECT count(*) - count(DISTINCT (transaction_id, line_number)) FROM fact_sales) AS duplicate_lines,
    (SELECT count(*) - count(DISTINCT transaction_id) FROM fact_transactions) AS duplicate_transactions,
    -- a transaction in one fact table and not the other, or whose totals differ from its lines
    (SELECT count(*) FROM fact_transactions t FULL JOIN line_totals l USING (transaction_id)
     WHERE t.transaction_id IS NULL OR l.transaction_id IS NULL
        OR (t.lines, t.total_price, t.total_weight_kg) IS DISTINCT FROM (l.lines, l.price, l.weight_kg))
        AS transactions_not_matching_lines
