-- PostgreSQL: give each membership ID of the batch (temp table members_stage) that nobody holds yet to
-- the batch's first applicant with it, with the values of that person's last row in the batch. IDs
-- already held are left alone (update_members.sql and record_collisions.sql deal with them). A
-- concurrent batch inserting the same ID makes this wait for its commit; in ID order, so no deadlock.
WITH first_applicant AS (
    SELECT DISTINCT ON (membership_id) membership_id, lower(first_name) AS person
    FROM members_stage
    ORDER BY membership_id, row_number
),
latest AS (
    SELECT DISTINCT ON (s.membership_id) s.*
    FROM members_stage AS s
    JOIN first_applicant AS f ON f.membership_id = s.membership_id AND lower(s.first_name) = f.person
    ORDER BY s.membership_id, s.row_number DESC
)
INSERT INTO sales.members
    (membership_id, first_name, last_name, email, date_of_birth, mobile_no, above_18, source_batch, source_landed_at)
SELECT membership_id, first_name, last_name, email, date_of_birth, mobile_no, above_18, %(batch)s, %(landed_at)s
FROM latest
ORDER BY membership_id
ON CONFLICT (membership_id) DO NOTHING
