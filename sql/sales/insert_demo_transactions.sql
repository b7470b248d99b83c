-- PostgreSQL: move the staged demo transactions (temp tables demo_transactions_stage and
-- demo_lines_stage) into sales.transactions / sales.transaction_lines. Ids come from the identity
-- sequence in order of creation time, so they interleave safely with any other writer's.
CREATE TEMP TABLE demo_ids ON COMMIT DROP AS
SELECT membership_id, transaction_no,
       nextval(pg_get_serial_sequence('sales.transactions', 'transaction_id')) AS transaction_id
FROM (
    SELECT membership_id, transaction_no FROM demo_transactions_stage
    ORDER BY created_at, membership_id, transaction_no
) ordered;

INSERT INTO sales.transactions
    (transaction_id, membership_id, total_price, total_weight_kg, status, created_at, completed_at)
SELECT i.transaction_id, s.membership_id, s.total_price, s.total_weight_kg, s.status, s.created_at, s.completed_at
FROM demo_transactions_stage s
JOIN demo_ids i USING (membership_id, transaction_no)
ORDER BY i.transaction_id;

INSERT INTO sales.transaction_lines
    (transaction_id, line_number, item_id, quantity, unit_price, unit_weight_kg)
SELECT i.transaction_id, l.line_number, l.item_id, l.quantity, l.unit_price, l.unit_weight_kg
FROM demo_lines_stage l
JOIN demo_ids i USING (membership_id, transaction_no)
ORDER BY i.transaction_id, l.line_number;
