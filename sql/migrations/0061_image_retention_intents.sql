-- The retention audit accounts for everything deleted, also by a run that was killed half-way
-- (memberflow_assets/images/retention/expiry.py, "Accounting"). Before deleting anything of an hour, a run
-- records what is there (state 'deleting', `unaccounted`); as it deletes, it moves those counts into
-- the row. A run that dies leaves its rows in 'deleting': the next run looks at what is left of the
-- hour, credits the dead run with the difference (state 'reconciled') and fills in its totals.
ALTER TABLE images.retention_purges
    ADD COLUMN state text NOT NULL DEFAULT 'done' CHECK (state IN ('deleting', 'done', 'reconciled')),
    -- what the run found before deleting and has not accounted for yet:
    -- {"files": {"<zone>": [objects, bytes]}, "dagster_run_ids": [...]}; NULL once accounted for
    ADD COLUMN unaccounted jsonb;

ALTER TABLE images.retention_runs
    ADD COLUMN reconciled_at timestamptz,  -- the run stopped before it finished; a later run counted what it did
    ADD COLUMN reconciled_by text;

-- Held (EXCLUSIVE, by a connection of its own) for the whole of a retention run: one run at a time,
-- so whatever is left in 'deleting' when a run holds it was left by a dead run. A table lock rather
-- than an advisory lock: other roles cannot take it.
CREATE TABLE images.retention_lock ();
