-- DuckDB: fact_sales rows whose keys have no dimension row, and lines present more than once.
SELECT
    (SELECT count(*) FROM fact_sales f WHERE NOT EXISTS (SELECT 1 FROM dim_member m WHERE m.membership_id = f.membership_id))
        AS facts_without_member,
    (SELECT count(*) FROM fact_sales f WHERE NOT EXISTS (SELECT 1 FROM dim_item i WHERE i.item_id = f.item_id))
        AS facts_without_item,
    (SELECT count(*) FROM fact_sales f WHERE NOT EXISTS (SELECT 1 FROM dim_date d WHERE d.date_key = f.date_key))
        AS facts_without_date,
    (SELECT count(*) - count(DISTINCT (transaction_id, line_number)) FROM fact_sales) AS duplicate_lines
