-- PostgreSQL: the control totals of the transactions unchanged since the warehouse's watermark
-- %(watermark)s, from the transactions' own totals (which the database keeps equal to their lines).
SELECT count(*), coalesce(sum(total_price), 0), coalesce(sum(total_weight_kg), 0)
FROM sales.transactions
WHERE updated_at < %(watermark)s
