-- PostgreSQL -> fact_sales: every line of the transactions written since %(since)s ('-infinity' = all).
SELECT transaction_id, line_number, item_id, quantity, unit_price, unit_weight_kg, line_price, line_weight_kg
FROM sales.transaction_lines
WHERE transaction_id IN (SELECT transaction_id FROM sales.transactions WHERE updated_at >= %(since)s)
