-- PostgreSQL: the point up to which an extraction taken right after this query sees every change.
-- sales.transactions.updated_at is the clock time of the write, so a row version that the
-- extraction's snapshot cannot see (its writer commits later) was written either by a transaction
-- that already held a transaction id now - and then no earlier than that transaction started - or
-- later than now. The next incremental refresh reads from here; rows it sees twice are merged by key.
-- (Needs pg_read_all_stats to see other roles' sessions; the embedded server's platform role is superuser.)
SELECT least(
    clock_timestamp(),
    (SELECT min(xact_start) FROM pg_stat_activity
     WHERE backend_xid IS NOT NULL AND datname = current_database() AND pid <> pg_backend_pid())
)
