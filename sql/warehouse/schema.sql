-- DuckDB: the sales star schema (schema main), the refresh log (schema meta) and the BI schema.
-- Keys are durable keys of the operational database: member_key (the surrogate analysts see
-- members by: membership_id would reveal the birthday), item_id, and the yyyymmdd date_key. They never
-- change, the dimensions keep current values (type 1), and the facts carry the price and weight at
-- the time of sale, so warehouse-made surrogate keys would add a lookup and nothing else.
CREATE SCHEMA IF NOT EXISTS meta;
CREATE SCHEMA IF NOT EXISTS bi;

CREATE TABLE IF NOT EXISTS dim_member (
    member_key     UUID NOT NULL,
    first_name     VARCHAR NOT NULL,
    last_name      VARCHAR NOT NULL,
    birth_year     INTEGER NOT NULL,
    above_18       BOOLEAN NOT NULL,
    source_batch   VARCHAR NOT NULL,
    member_since   TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS dim_item (
    item_id            INTEGER NOT NULL,
    item_name          VARCHAR NOT NULL,
    manufacturer_id    INTEGER NOT NULL,
    manufacturer_name  VARCHAR NOT NULL,
    cost               DECIMAL(12, 2) NOT NULL,
    weight_kg          DECIMAL(10, 3) NOT NULL,
    on_sale            BOOLEAN NOT NULL,
    discontinued_at    TIMESTAMPTZ
);

CREATE TABLE IF NOT EXISTS dim_date (
    date_key      INTEGER NOT NULL,
    date          DATE NOT NULL,
    year          INTEGER NOT NULL,
    quarter       INTEGER NOT NULL,
    month         INTEGER NOT NULL,
    month_name    VARCHAR NOT NULL,
    day           INTEGER NOT NULL,
    iso_week      INTEGER NOT NULL,
    day_of_week   INTEGER NOT NULL,  -- ISO: 1 = Monday
    day_name      VARCHAR NOT NULL,
    is_weekend    BOOLEAN NOT NULL
);

-- One row per transaction line. Transaction attributes (member, status, times) are repeated on its
-- lines; source_updated_at is the transaction's updated_at in PostgreSQL when it was extracted.
-- first_line_for_item marks the first line of each item within its transaction, so "in how many
-- transactions was this item bought" is a plain filtered count instead of a distinct count.
CREATE TABLE IF NOT EXISTS fact_sales (
    transaction_id       BIGINT NOT NULL,
    line_number          SMALLINT NOT NULL,
    member_key           UUID NOT NULL,
    item_id              INTEGER NOT NULL,
    date_key             INTEGER NOT NULL,  -- the day (UTC) the transaction was created
    created_at           TIMESTAMPTZ NOT NULL,
    status               VARCHAR NOT NULL,
    completed_at         TIMESTAMPTZ,
    quantity             INTEGER NOT NULL,
    unit_price           DECIMAL(12, 2) NOT NULL,
    unit_weight_kg       DECIMAL(10, 3) NOT NULL,
    line_price           DECIMAL(14, 2) NOT NULL,
    line_weight_kg       DECIMAL(14, 3) NOT NULL,
    first_line_for_item  BOOLEAN NOT NULL,
    source_updated_at    TIMESTAMPTZ NOT NULL
);

-- The same transactions at their own grain (one row each, totals as PostgreSQL holds them): what the
-- per-transaction, per-member and per-day views aggregate, without regrouping millions of lines.
CREATE TABLE IF NOT EXISTS fact_transactions (
    transaction_id     BIGINT NOT NULL,
    member_key         UUID NOT NULL,
    date_key           INTEGER NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL,
    status             VARCHAR NOT NULL,
    completed_at       TIMESTAMPTZ,
    lines              INTEGER NOT NULL,
    units              INTEGER NOT NULL,
    total_price        DECIMAL(14, 2) NOT NULL,
    total_weight_kg    DECIMAL(14, 3) NOT NULL,
    source_updated_at  TIMESTAMPTZ NOT NULL
);

-- Membership applications: outcome and reasons only (no personal data) from members/*/*.parquet.
CREATE TABLE IF NOT EXISTS application_outcomes (
    batch              VARCHAR NOT NULL,
    row_number         BIGINT NOT NULL,
    is_successful      BOOLEAN NOT NULL,
    rejection_reasons  VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS meta.refreshes (
    refreshed_at          TIMESTAMPTZ NOT NULL,
    mode                  VARCHAR NOT NULL,  -- full | incremental
    changed_since         TIMESTAMPTZ,       -- NULL for a full refresh
    watermark             TIMESTAMPTZ NOT NULL,  -- the next incremental refresh reads changes from here
    transactions_loaded   BIGINT NOT NULL,
    lines_loaded          BIGINT NOT NULL
);

-- A warehouse written before member_key identified members by membership_id: forget its watermark,
-- so this refresh extracts every transaction again, and swap the column (rows are loaded by name).
DELETE FROM meta.refreshes
WHERE EXISTS (SELECT 1 FROM duckdb_columns() WHERE table_name = 'fact_sales' AND column_name = 'membership_id');
ALTER TABLE dim_member DROP COLUMN IF EXISTS membership_id;
ALTER TABLE dim_member ADD COLUMN IF NOT EXISTS member_key UUID;
ALTER TABLE fact_sales DROP COLUMN IF EXISTS membership_id;
ALTER TABLE fact_sales ADD COLUMN IF NOT EXISTS member_key UUID;
ALTER TABLE fact_transactions DROP COLUMN IF EXISTS membership_id;
ALTER TABLE fact_transactions ADD COLUMN IF NOT EXISTS member_key UUID;
