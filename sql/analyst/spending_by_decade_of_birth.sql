-- Sample analyst query (DuckDB warehouse): how members born in each decade spend - members with at
-- least one purchase, their transactions per member and the average basket.
WITH per_member AS (
    SELECT member_key, count(DISTINCT transaction_id) AS transactions, sum(line_price) AS spent
    FROM fact_sales
    GROUP BY member_key
)
SELECT
    m.birth_year // 10 * 10 AS born_in_decade,
    count(*) AS buying_members,
    round(avg(p.transactions), 2) AS transactions_per_member,
    CAST(sum(p.spent) / sum(p.transactions) AS DECIMAL(14, 2)) AS average_basket,
    sum(p.spent) AS total_spent
FROM per_member p
JOIN dim_member m USING (member_key)
GROUP BY born_in_decade
ORDER BY born_in_decade
