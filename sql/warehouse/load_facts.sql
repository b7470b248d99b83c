-- DuckDB: merge the extracted transactions (stage_transactions) and their lines (stage_lines) into
-- fact_sales. Every line of a re-extracted transaction is replaced, so new lines, removed lines and
-- status changes all land, and extracting a transaction twice changes nothing.
DELETE FROM fact_sales WHERE transaction_id IN (SELECT transaction_id FROM stage_transactions);

INSERT INTO fact_sales
SELECT
    l.transaction_id,
    l.line_number,
    t.membership_id,
    l.item_id,
    year(t.sale_date) * 10000 + month(t.sale_date) * 100 + day(t.sale_date) AS date_key,
    t.created_at,
    t.status,
    t.completed_at,
    l.quantity,
    l.unit_price,
    l.unit_weight_kg,
    l.line_price,
    l.line_weight_kg,
    t.updated_at AS source_updated_at
FROM stage_lines l
JOIN stage_transactions t USING (transaction_id);
