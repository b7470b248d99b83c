-- An UPDATE that changes nothing keeps a transaction's updated_at. Before, every updated row got a new
-- updated_at: `UPDATE sales.transactions SET status = status` by Logistics (its column grant allows it,
-- and completed rows pass the status rule unchanged) "changed" every transaction, completed ones too,
-- and the next incremental warehouse refresh re-extracted all of them.
--
-- updated_at moves when a column of the row changes, or when the writer sets updated_at itself: the
-- lines' trigger does (queue_totals_check, 0011) to mark a transaction whose lines changed; no team may
-- write that column.
CREATE OR REPLACE FUNCTION sales.transactions_before_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'completed'
       AND (NEW.status IS DISTINCT FROM 'completed' OR NEW.completed_at IS DISTINCT FROM OLD.completed_at) THEN
        RAISE EXCEPTION 'transaction % is already completed; its status and completed_at cannot change',
            OLD.transaction_id USING ERRCODE = 'check_violation';
    END IF;
    IF OLD.status = 'pending' AND NEW.status = 'completed' AND NEW.completed_at IS NULL THEN
        NEW.completed_at := now();
    END IF;
    IF NEW.updated_at IS DISTINCT FROM OLD.updated_at OR NEW IS DISTINCT FROM OLD THEN
        NEW.updated_at := clock_timestamp();
    END IF;
    RETURN NEW;
END $$;
