-- PostgreSQL: the batch's latest row of each member (same ID, same first name in any case) updates
-- them, unless their values came from a file that landed later. Only members whose values change are
-- written (or even locked), so a rerun touches nothing; in ID order, so concurrent batches never
-- deadlock, and ON CONFLICT re-checks each condition on the row as it is when locked.
WITH latest AS (
    SELECT DISTINCT ON (s.membership_id)
        s.*,
        (%(landed_at)s::timestamptz, %(batch)s) >= (holder.source_landed_at, holder.source_batch)
        AND (holder.first_name, holder.last_name, holder.email, holder.date_of_birth, holder.mobile_no,
             holder.source_batch, holder.source_landed_at)
            IS DISTINCT FROM
            (s.first_name, s.last_name, s.email, s.date_of_birth, s.mobile_no, %(batch)s, %(landed_at)s::timestamptz)
            AS changes
    FROM members_stage AS s
    JOIN sales.members AS holder
      ON holder.membership_id = s.membership_id AND lower(holder.first_name) = lower(s.first_name)
    ORDER BY s.membership_id, s.row_number DESC
)
INSERT INTO sales.members AS m
    (membership_id, first_name, last_name, email, date_of_birth, mobile_no, above_18, source_batch, source_landed_at)
SELECT membership_id, first_name, last_name, email, date_of_birth, mobile_no, above_18,
       %(batch)s, %(landed_at)s::timestamptz
FROM latest
WHERE changes
ORDER BY membership_id
ON CONFLICT (membership_id) DO UPDATE
SET first_name = EXCLUDED.first_name,
    last_name = EXCLUDED.last_name,
    email = EXCLUDED.email,
    date_of_birth = EXCLUDED.date_of_birth,
    mobile_no = EXCLUDED.mobile_no,
    source_batch = EXCLUDED.source_batch,
    source_landed_at = EXCLUDED.source_landed_at,
    updated_at = now()
WHERE lower(m.first_name) = lower(EXCLUDED.first_name)
  AND (EXCLUDED.source_landed_at, EXCLUDED.source_batch) >= (m.source_landed_at, m.source_batch)
  AND (m.first_name, m.last_name, m.email, m.date_of_birth, m.mobile_no, m.source_batch, m.source_landed_at)
      IS DISTINCT FROM
      (EXCLUDED.first_name, EXCLUDED.last_name, EXCLUDED.email, EXCLUDED.date_of_birth, EXCLUDED.mobile_no,
       EXCLUDED.source_batch, EXCLUDED.source_landed_at)
