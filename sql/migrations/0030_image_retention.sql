-- The 7-day image retention purge (memberflow_assets/images/retention/expiry.py): its audit trail, and an
-- index so it can find rows by age. The audit holds counts and partition keys only: no image
-- content, ids, clients, hashes or paths.
CREATE INDEX registry_received ON images.registry (received_at) WHERE status <> 'purged';

-- One row per retention run (scheduled, manual or CLI), also when it purged nothing.
CREATE TABLE images.retention_runs (
    retention_run_id     text PRIMARY KEY,          -- the Dagster run id, or cli-<uuid>
    trigger              text NOT NULL,             -- 'schedule', 'dagster', 'cli'
    as_of                timestamptz NOT NULL,      -- partitions whose hour ended more than 7 days before this went
    first_kept_hour      text NOT NULL,             -- yyyy-mm-dd-hh: this hour and every later one were kept
    started_at           timestamptz NOT NULL,
    finished_at          timestamptz,               -- NULL: the run stopped before it finished
    partitions_purged    integer NOT NULL DEFAULT 0,
    objects_deleted      bigint NOT NULL DEFAULT 0,
    bytes_deleted        bigint NOT NULL DEFAULT 0,
    registry_rows_purged bigint NOT NULL DEFAULT 0,
    dagster_runs_deleted integer NOT NULL DEFAULT 0
);

-- One row per hourly partition a run purged, written in the same transaction as its registry tombstones.
CREATE TABLE images.retention_purges (
    retention_run_id     text NOT NULL REFERENCES images.retention_runs,
    hour_key             text NOT NULL,
    purged_at            timestamptz NOT NULL,
    objects_deleted      bigint NOT NULL,
    bytes_deleted        bigint NOT NULL,
    objects_by_zone      jsonb NOT NULL,            -- {"landing": n, "processed": n, "metadata": n, "quarantine": n}
    registry_rows_purged bigint NOT NULL,
    dagster_runs_deleted integer NOT NULL,
    PRIMARY KEY (retention_run_id, hour_key)
);
