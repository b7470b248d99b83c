-- PostgreSQL: every applicant of the batch whose membership ID is held by another person (another
-- first name) is recorded in sales.membership_id_collisions; the batch's earlier records that are no
-- collisions any more (the file was rewritten) are removed.
WITH current AS (
    SELECT s.*, holder.source_batch AS held_by_batch
    FROM members_stage AS s
    JOIN sales.members AS holder
      ON holder.membership_id = s.membership_id AND lower(holder.first_name) <> lower(s.first_name)
),
stale AS (
    DELETE FROM sales.membership_id_collisions AS old
    WHERE old.batch = %(batch)s
      AND NOT EXISTS (SELECT FROM members_stage AS s
                      JOIN sales.members AS holder ON holder.membership_id = s.membership_id
                      WHERE s.row_number = old.row_number AND lower(holder.first_name) <> lower(s.first_name))
)
INSERT INTO sales.membership_id_collisions AS c
    (batch, row_number, membership_id, first_name, last_name, email, date_of_birth, mobile_no, held_by_batch)
SELECT %(batch)s, row_number, membership_id, first_name, last_name, email, date_of_birth, mobile_no, held_by_batch
FROM current
ORDER BY row_number
ON CONFLICT (batch, row_number) DO UPDATE
SET membership_id = EXCLUDED.membership_id,
    first_name = EXCLUDED.first_name,
    last_name = EXCLUDED.last_name,
    email = EXCLUDED.email,
    date_of_birth = EXCLUDED.date_of_birth,
    mobile_no = EXCLUDED.mobile_no,
    held_by_batch = EXCLUDED.held_by_batch
WHERE (c.membership_id, c.first_name, c.last_name, c.email, c.date_of_birth, c.mobile_no, c.held_by_batch)
      IS DISTINCT FROM
      (EXCLUDED.membership_id, EXCLUDED.first_name, EXCLUDED.last_name, EXCLUDED.email, EXCLUDED.date_of_birth,
       EXCLUDED.mobile_no, EXCLUDED.held_by_batch)
