-- Members: successful membership applicants, loaded by the `members` asset from
-- members/successful/<batch>.parquet. One row per membership_id (the same person in two files is one member).
CREATE SCHEMA IF NOT EXISTS sales;

CREATE TABLE sales.members (
    membership_id  text PRIMARY KEY CHECK (membership_id ~ '^\S+_[0-9a-f]{5}$'),
    first_name     text NOT NULL,
    last_name      text NOT NULL CHECK (last_name <> ''),
    email          text NOT NULL,
    date_of_birth  date NOT NULL,
    mobile_no      text NOT NULL CHECK (mobile_no ~ '^[0-9]{8}$'),
    above_18       boolean NOT NULL CHECK (above_18),
    source_batch   text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE sales.members IS 'Successful membership applicants (membership pipeline output).';
