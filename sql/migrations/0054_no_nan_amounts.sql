-- No amount is NaN. PostgreSQL's numeric accepts 'NaN', and NaN passes `cost >= 0` and `weight_kg > 0`
-- (it sorts above every number) and equals itself in the totals check: the Sales team could price or
-- weigh an item as NaN, every later sale of it would carry NaN into its lines and totals, and the
-- warehouse (DuckDB DECIMAL has no NaN) could no longer load them.
--
-- As in 0052: added NOT VALID, validated at once when no such row exists, otherwise named in a WARNING
-- while new writes are refused already.
DO $$
DECLARE
    amount record;
    constraint_name text;
BEGIN
    FOR amount IN
        SELECT * FROM (VALUES
            ('items', 'cost'), ('items', 'weight_kg'),
            ('transaction_lines', 'unit_price'), ('transaction_lines', 'unit_weight_kg'),
            ('transactions', 'total_price'), ('transactions', 'total_weight_kg')
        ) AS columns (table_name, column_name)
    LOOP
        constraint_name := format('%s_%s_is_a_number', amount.table_name, amount.column_name);
        EXECUTE format('ALTER TABLE sales.%I ADD CONSTRAINT %I CHECK (%I <> ''NaN'') NOT VALID',
                       amount.table_name, constraint_name, amount.column_name);
        BEGIN
            EXECUTE format('ALTER TABLE sales.%I VALIDATE CONSTRAINT %I', amount.table_name, constraint_name);
        EXCEPTION WHEN check_violation THEN
            RAISE WARNING 'sales.% holds rows whose % is NaN', amount.table_name, amount.column_name
                USING HINT = format('correct them, then: ALTER TABLE sales.%I VALIDATE CONSTRAINT %I',
                                    amount.table_name, constraint_name);
        END;
    END LOOP;
END $$;
