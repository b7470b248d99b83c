-- Members are loaded one batch at a time (the `members` asset is partitioned like the files), so each
-- member records which landed file its values came from: a batch overwrites them only when its file
-- landed at the same time or later, whatever order the batches run in. A successful applicant whose
-- membership ID is already held by someone else (another first name) is kept here, never merged.
ALTER TABLE sales.members ADD COLUMN source_landed_at timestamptz NOT NULL DEFAULT '-infinity';
COMMENT ON COLUMN sales.members.source_landed_at IS
    'When the file of source_batch landed; a batch changes the member only if its file landed no earlier.';

CREATE TABLE sales.membership_id_collisions (
    batch          text NOT NULL,
    row_number     bigint NOT NULL,
    membership_id  text NOT NULL REFERENCES sales.members ON DELETE RESTRICT,
    first_name     text NOT NULL,
    last_name      text NOT NULL,
    email          text NOT NULL,
    date_of_birth  date NOT NULL,
    mobile_no      text NOT NULL,
    held_by_batch  text NOT NULL,
    detected_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (batch, row_number)
);
CREATE INDEX membership_id_collisions_membership_id ON sales.membership_id_collisions (membership_id);
COMMENT ON TABLE sales.membership_id_collisions IS
    'Successful applicants whose membership ID another member (another first name) already holds: not loaded '
    'into sales.members; the business decides (docs/membership.md). One row per application (batch, row_number).';
