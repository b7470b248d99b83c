-- PostgreSQL: the other sessions holding locks on tables of this database, oldest transaction first:
-- what a statement that gave up waiting for a lock (lock_timeout) was most likely waiting for.
SELECT a.pid,
       a.usename,
       a.application_name,
       a.state,
       a.xact_start,
       string_agg(DISTINCT l.relation::regclass::text, ', ') AS tables
FROM pg_locks l
JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.granted
  AND l.locktype = 'relation'
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND a.pid <> pg_backend_pid()
GROUP BY a.pid, a.usename, a.application_name, a.state, a.xact_start
ORDER BY a.xact_start NULLS LAST
LIMIT 10
