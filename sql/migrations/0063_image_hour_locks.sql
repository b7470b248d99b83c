-- One row per image hour processing has run for. A processing run holds its hour's row lock for its whole
-- transaction (images/registry.py, lock_hour), so two runs of one hour never rewrite its metadata file at
-- once. It replaces an advisory lock: any session may take those where 0050 could not revoke the
-- functions from PUBLIC (RDS, no superuser), and a team user holding the key would stall the hour for
-- ever; nobody but the platform's role can read, let alone lock, a row of this table.
CREATE TABLE images.hour_locks (hour_key text PRIMARY KEY);
REVOKE ALL ON images.hour_locks FROM PUBLIC;
