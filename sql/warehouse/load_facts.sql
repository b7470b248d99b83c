-- DuckDB: merge the extracted transactions (stage_transactions) and their lines (stage_lines) into
-- fact_sales and fact_transactions. A re-extracted transaction replaces all its rows, so new lines,
-- removed lines and status changes all land, and extracting a transaction twice changes nothing.
DELETE FROM fact_sales WHERE transaction_id IN (SELECT transaction_id FROM stage_transactions);
DELETE FROM fact_transactions WHERE transaction_id IN (SELECT transaction_id FROM stage_transactions);

CREATE OR REPLACE TEMP TABLE stage_dated AS
SELECT *, year(sale_date) * 10000 + month(sale_date) * 100 + day(sale_date) AS date_key
FROM stage_transactions;

INSERT INTO fact_sales BY NAME
SELECT
    l.transaction_id,
    l.line_number,
    t.member_key,
    l.item_id,
    t.date_key,
    t.created_at,
    t.status,
    t.completed_at,
    l.quantity,
    l.unit_price,
    l.unit_weight_kg,
    l.line_price,
    l.line_weight_kg,
    row_number() OVER (PARTITION BY l.transaction_id, l.item_id ORDER BY l.line_number) = 1 AS first_line_for_item,
    t.updated_at AS source_updated_at
FROM stage_lines l
JOIN stage_dated t USING (transaction_id);

INSERT INTO fact_transactions BY NAME
SELECT
    t.transaction_id,
    t.member_key,
    t.date_key,
    t.created_at,
    t.status,
    t.completed_at,
    l.lines,
    l.units,
    t.total_price,
    t.total_weight_kg,
    t.updated_at AS source_updated_at
FROM stage_dated t
JOIN (
    SELECT transaction_id, count(*) AS lines, sum(quantity) AS units
    FROM stage_lines
    GROUP BY transaction_id
) l USING (transaction_id);
