-- PostgreSQL -> fact_sales: the transactions written since %(since)s ('-infinity' = all).
SELECT transaction_id, membership_id, status, created_at, (created_at AT TIME ZONE 'UTC')::date AS sale_date,
       completed_at, updated_at, total_price, total_weight_kg
FROM sales.transactions
WHERE updated_at >= %(since)s
