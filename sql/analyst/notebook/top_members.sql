-- Notebook chart "Top 10 members by spending": by name and totals only (no member key), ranked.
SELECT rank, concat_ws(' ', first_name, last_name) AS member, transactions, total_spent
FROM bi.top_members_by_spending
ORDER BY rank
