-- Every time a team may write is one the warehouse can load. PostgreSQL's timestamptz runs from 4713 BC
-- to 294276 AD, DuckDB's from 290309 BC to 294247 AD, and the extract's CSV text of a BC time
-- ('0044-03-15 00:00:00+00 BC') is no DuckDB timestamp at all: the Sales team could take an item off
-- sale in 294270 or in 44 BC, and every later warehouse refresh, incremental and full, would fail on it.
-- So the times teams write stay within years 1 to 9999 (UTC), as the dates people mean do. 'infinity'
-- and '-infinity' load as DuckDB's own infinities and stay allowed for discontinued_at; a sale's times
-- are no infinities (a sale_date and dim_date need a real day).
--
-- The times teams can write (the grants of 0012): sales.items.discontinued_at (Sales) and
-- sales.transactions.completed_at (Logistics: 0052 bounds it above, completed_after_created below only
-- by created_at). created_at is the platform's today, but a team that records sales (the shop's order
-- service of docs/access.md) would write it: it gets the same bound, and so does completed_at on its own.
--
-- As in 0054: added NOT VALID, validated at once when no such row exists, otherwise named in a WARNING
-- while new writes are refused already.
DO $$
DECLARE
    time_column record;
    constraint_name text;
    loadable text;
    bad_keys text;
BEGIN
    FOR time_column IN
        SELECT * FROM (VALUES
            ('items', 'discontinued_at', 'item_id', true),
            ('transactions', 'created_at', 'transaction_id', false),
            ('transactions', 'completed_at', 'transaction_id', false)
        ) AS columns (table_name, column_name, key_name, infinity_allowed)
    LOOP
        constraint_name := format('%s_%s_loadable', time_column.table_name, time_column.column_name);
        loadable := format('%1$I BETWEEN ''0001-01-01 00:00:00+00'' AND ''9999-12-31 23:59:59.999999+00''',
                           time_column.column_name);
        IF time_column.infinity_allowed THEN
            loadable := format('%1$I IN (''infinity'', ''-infinity'') OR %2$s', time_column.column_name, loadable);
        END IF;
        EXECUTE format('ALTER TABLE sales.%I ADD CONSTRAINT %I CHECK (%s) NOT VALID',
                       time_column.table_name, constraint_name, loadable);
        BEGIN
            EXECUTE format('ALTER TABLE sales.%I VALIDATE CONSTRAINT %I', time_column.table_name, constraint_name);
        EXCEPTION WHEN check_violation THEN
            EXECUTE format('SELECT string_agg(key::text, '', '') FROM (SELECT %1$I AS key FROM sales.%2$I '
                           'WHERE NOT (%3$s) ORDER BY 1 LIMIT 20) bad',
                           time_column.key_name, time_column.table_name, loadable)
                INTO bad_keys;
            RAISE WARNING 'sales.% holds rows whose % the warehouse cannot load (%: %)',
                time_column.table_name, time_column.column_name, time_column.key_name, bad_keys
                USING HINT = format('correct them, then: ALTER TABLE sales.%I VALIDATE CONSTRAINT %I',
                                    time_column.table_name, constraint_name);
        END;
    END LOOP;
END $$;
