-- PostgreSQL: give each membership ID of the batch (temp table members_stage) that nobody holds yet to
-- the batch's first applicant with it, with the values of that person's last row in the batch. IDs
-- already held are left alone (update_members.sql and record_collisions.sql deal with them). A
-- concurrent batch inserting the same ID makes this wait for its commit; in ID order, so no deadlock.
WITH ranked AS (
    SELECT
        s.*,
        first_value(lower(s.first_name)) OVER (PARTITION BY s.membership_id ORDER BY s.row_number) AS first_person
    FROM members_stage AS s
),
latest AS (
    SELECT DISTINCT ON (membership_id) *
    FROM ranked
    WHERE lower(first_name) = first_person
    ORDER BY membership_id, row_number DESC
)
INSERT INTO sales.members
    (membership_id, first_name, last_name, email, date_of_birth, mobile_no, above_18, source_batch, source_landed_at)
SELECT membership_id, first_name, last_name, email, date_of_birth, mobile_no, above_18, %(batch)s, %(landed_at)s
FROM latest
WHERE NOT EXISTS (SELECT FROM sales.members AS m WHERE m.membership_id = latest.membership_id)
ORDER BY membership_id
ON CONFLICT (membership_id) DO NOTHING
