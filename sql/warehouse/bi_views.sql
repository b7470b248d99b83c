-- DuckDB: the analysts' BI views (schema bi) over the sales star schema and the membership outcomes.
-- Recreated by every warehouse refresh, so a change here reaches the warehouse with the next refresh.
-- Per-transaction questions read fact_transactions (one row per transaction) rather than regrouping
-- the lines of fact_sales.

-- The 10 members who spent most (all transactions, pending or completed); ties by member_key.
CREATE OR REPLACE VIEW bi.top_members_by_spending AS
WITH spending AS (
    SELECT member_key, count(*) AS transactions, sum(total_price) AS total_spent
    FROM fact_transactions
    GROUP BY member_key
),
top AS (  -- the 10 first, then rank and names for those 10 only
    SELECT * FROM spending ORDER BY total_spent DESC, member_key LIMIT 10
)
SELECT
    row_number() OVER (ORDER BY t.total_spent DESC, t.member_key) AS rank,
    t.member_key,
    m.first_name,
    m.last_name,
    t.transactions,
    t.total_spent
FROM top t
LEFT JOIN dim_member m USING (member_key)
ORDER BY rank;

-- The 3 items bought most often: in the most transactions; ties by units sold, then item_id.
CREATE OR REPLACE VIEW bi.top_items_by_purchases AS
WITH purchases AS (
    SELECT item_id, count(*) FILTER (WHERE first_line_for_item) AS times_bought, sum(quantity) AS units_sold,
           sum(line_price) AS revenue
    FROM fact_sales
    GROUP BY item_id
),
top AS (
    SELECT * FROM purchases ORDER BY times_bought DESC, units_sold DESC, item_id LIMIT 3
)
SELECT
    row_number() OVER (ORDER BY t.times_bought DESC, t.units_sold DESC, t.item_id) AS rank,
    t.item_id,
    i.item_name,
    i.manufacturer_name,
    t.times_bought,
    t.units_sold,
    t.revenue
FROM top t
LEFT JOIN dim_item i USING (item_id)
ORDER BY rank;

-- Sales per day (UTC): transactions, units and revenue; days without sales are not listed.
CREATE OR REPLACE VIEW bi.sales_per_day AS
WITH daily AS (
    SELECT date_key, count(*) AS transactions, sum(units) AS units_sold, sum(total_price) AS revenue
    FROM fact_transactions
    GROUP BY date_key
)
SELECT d.date, d.day_name, daily.transactions, daily.units_sold, daily.revenue,
       CAST(daily.revenue / daily.transactions AS DECIMAL(14, 2)) AS average_basket
FROM daily
JOIN dim_date d USING (date_key)
ORDER BY d.date;

-- For logistics: the total weight to ship per transaction.
CREATE OR REPLACE VIEW bi.transaction_weights AS
SELECT transaction_id, member_key, status, created_at, completed_at, lines, units, total_weight_kg
FROM fact_transactions;

-- Membership applications by outcome and rejection reason. An application that broke several rules
-- counts once under each of its reasons; applications_in_outcome counts each application once.
CREATE OR REPLACE VIEW bi.membership_applications_by_outcome AS
WITH reasons AS (
    SELECT
        CASE WHEN is_successful THEN 'successful' ELSE 'unsuccessful' END AS outcome,
        unnest(CASE WHEN is_successful THEN [NULL] ELSE string_split(rejection_reasons, ';') END) AS rejection_reason
    FROM application_outcomes
),
outcomes AS (
    SELECT CASE WHEN is_successful THEN 'successful' ELSE 'unsuccessful' END AS outcome,
           count(*) AS applications_in_outcome
    FROM application_outcomes
    GROUP BY ALL
)
SELECT r.outcome, r.rejection_reason, count(*) AS applications, any_value(o.applications_in_outcome) AS applications_in_outcome
FROM reasons r
JOIN outcomes o USING (outcome)
GROUP BY ALL
ORDER BY r.outcome, applications DESC, r.rejection_reason;
