-- PostgreSQL: give each membership ID of the batch (temp table members_stage) that nobody holds yet to
-- the batch's first applicant with it, with the values of that person's last row in the batch. IDs
-- already held are left alone (update_members.sql and record_collisions.sql deal with them). A
-- concurrent batch inserting the same ID makes this wait for its commit; in ID order, so no deadlock.
-- A new member's member_key is time-ordered (UUIDv7's layout, RFC 9562): 48 bits of the transaction's
-- start in milliseconds, then random bits. The batch's keys then go together to the right edge of the
-- key's unique index, not to random pages all over it, which made a batch's cost grow with history.
-- The key says nothing about the person: its time is the member's creation (member_since, which the
-- analysts see anyway), the same for the whole batch, so it orders nothing within a batch.
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
    (membership_id, first_name, last_name, email, date_of_birth, mobile_no, above_18, source_batch, source_landed_at,
     member_key)
SELECT membership_id, first_name, last_name, email, date_of_birth, mobile_no, above_18, %(batch)s, %(landed_at)s,
       -- the random version-4 UUID's first 6 bytes replaced by the time, its version bits 0100 set to 0111
       encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
                                      PLACING substring(int8send(floor(extract(epoch FROM now()) * 1000)::bigint) FROM 3)
                                      FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid
FROM latest
WHERE NOT EXISTS (SELECT FROM sales.members AS m WHERE m.membership_id = latest.membership_id)
ORDER BY membership_id
ON CONFLICT (membership_id) DO NOTHING
