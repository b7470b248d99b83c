-- PostgreSQL -> fact_sales: the transactions written since %(since)s ('-infinity' = all).
SELECT transaction_id, member_key, status, created_at, (created_at AT TIME ZONE 'UTC')::date AS sale_date,
       completed_at, updated_at, total_price, total_weight_kg
FROM sales.member_transactions
WHERE updated_at >= %(since)s
