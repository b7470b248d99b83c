-- A transaction cannot be completed, or created, in the future: Logistics could set completed_at to
-- 'infinity' or 2999-01-01, which every report would then take at its word. Times up to
-- 5 minutes ahead of the database clock are accepted (the writer's clock may run a little fast).
-- statement_timestamp() is the time the writing statement started; a time that was not in the future
-- when written never becomes so, so the checks also hold when rows are restored later.
--
-- Added NOT VALID first so that a database that already holds such rows keeps working; they are
-- validated right away when there are none, and otherwise named in a WARNING (an operator decides
-- what the true times were) while the checks already hold for every new write.
ALTER TABLE sales.transactions
    ADD CONSTRAINT completed_at_not_in_future
        CHECK (completed_at <= statement_timestamp() + interval '5 minutes') NOT VALID,
    ADD CONSTRAINT created_at_not_in_future
        CHECK (created_at <= statement_timestamp() + interval '5 minutes') NOT VALID;

DO $$
DECLARE
    constraint_name text;
BEGIN
    FOREACH constraint_name IN ARRAY ARRAY['completed_at_not_in_future', 'created_at_not_in_future'] LOOP
        BEGIN
            EXECUTE format('ALTER TABLE sales.transactions VALIDATE CONSTRAINT %I', constraint_name);
        EXCEPTION WHEN check_violation THEN
            RAISE WARNING 'sales.transactions holds rows that break %: %', constraint_name,
                (SELECT string_agg(transaction_id::text, ', ') FROM (
                    SELECT transaction_id FROM sales.transactions
                    WHERE greatest(created_at, completed_at) > statement_timestamp() + interval '5 minutes'
                    ORDER BY transaction_id LIMIT 20) ids)
                USING HINT = 'correct their times, then: ALTER TABLE sales.transactions VALIDATE CONSTRAINT ' || constraint_name;
        END;
    END LOOP;
END $$;
