-- PostgreSQL: the data version of `sales_database` (the tables written outside Dagster), one cheap query.
-- Transactions: the newest id and the newest updated_at (the clock time of every write, indexed; updating
-- a line touches its transaction), so a new or changed transaction changes the version in two index
-- lookups. A write committed with an updated_at older than the newest one is not seen here (the 15-minute
-- warehouse schedule loads it). The catalogue is small and has no updated_at: it is hashed whole.
SELECT concat_ws(
    ' ',
    'transactions', (SELECT coalesce(max(transaction_id), 0) FROM sales.transactions),
    'updated', (SELECT coalesce(to_char(max(updated_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), '-')
                FROM sales.transactions),
    'catalogue', (SELECT left(md5(
                      coalesce((SELECT string_agg(concat_ws(',', manufacturer_id, name), ';' ORDER BY manufacturer_id)
                                FROM sales.manufacturers), '')
                      || '|' ||
                      coalesce((SELECT string_agg(concat_ws(',', item_id, name, manufacturer_id, cost, weight_kg,
                                                            discontinued_at), ';' ORDER BY item_id)
                                FROM sales.items), '')), 12))
)
