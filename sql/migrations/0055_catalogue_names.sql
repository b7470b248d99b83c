-- Catalogue names are short, printable text: at most 200 characters and no control characters
-- (newlines, tabs, NUL-like bytes), as every report, label and CSV extract expects. Without this the
-- Sales team could store a name of up to 1 GB, or one that breaks lines in every export.
-- Same as 0052/0054: NOT VALID, validated at once when the data allows, otherwise a WARNING.
DO $$
DECLARE
    rule record;
BEGIN
    FOR rule IN
        SELECT * FROM (VALUES
            ('items', 'items_name_is_short_and_printable'),
            ('manufacturers', 'manufacturers_name_is_short_and_printable')
        ) AS rules (table_name, constraint_name)
    LOOP
        EXECUTE format('ALTER TABLE sales.%I ADD CONSTRAINT %I '
                       'CHECK (length(name) <= 200 AND name !~ ''[[:cntrl:]]'') NOT VALID',
                       rule.table_name, rule.constraint_name);
        BEGIN
            EXECUTE format('ALTER TABLE sales.%I VALIDATE CONSTRAINT %I', rule.table_name, rule.constraint_name);
        EXCEPTION WHEN check_violation THEN
            RAISE WARNING 'sales.% holds names that break %', rule.table_name, rule.constraint_name
                USING HINT = format('correct them, then: ALTER TABLE sales.%I VALIDATE CONSTRAINT %I',
                                    rule.table_name, rule.constraint_name);
        END;
    END LOOP;
END $$;
