-- PostgreSQL: the point up to which an extraction taken right after this query sees every change.
-- sales.transactions.updated_at is the clock time of the write, so a row version that the
-- extraction's snapshot cannot see (its writer commits later) was written either by a transaction
-- that already held a transaction id now - and then no earlier than that transaction started - or
-- later than now. The next incremental refresh reads from here; rows it sees twice are merged by key.
-- Only sessions of roles that can write transactions or their lines count: any team user can take a
-- transaction id (txid_current()) and sit idle, which would otherwise pin the watermark and make every
-- incremental refresh re-read everything since (Analytics and Sales cannot write them; Logistics can).
-- Sessions without a role (background workers) count.
-- (Needs pg_read_all_stats to see other roles' sessions; the embedded server's platform role is superuser.)
SELECT least(
    clock_timestamp(),
    (SELECT min(xact_start) FROM pg_stat_activity
     WHERE backend_xid IS NOT NULL AND datname = current_database() AND pid <> pg_backend_pid()
       AND (usesysid IS NULL
            OR has_any_column_privilege(usesysid, 'sales.transactions', 'INSERT, UPDATE')
            OR has_table_privilege(usesysid, 'sales.transactions', 'DELETE, TRUNCATE')
            OR has_any_column_privilege(usesysid, 'sales.transaction_lines', 'INSERT, UPDATE')
            OR has_table_privilege(usesysid, 'sales.transaction_lines', 'DELETE, TRUNCATE')))
)
