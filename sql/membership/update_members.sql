-- PostgreSQL: the batch's latest row of each member (same ID, same first name in any case) updates
-- them, unless their values came from a file that landed later; only changed rows are written, so a
-- rerun writes nothing. In ID order, so concurrent batches never deadlock.
INSERT INTO sales.members AS m
    (membership_id, first_name, last_name, email, date_of_birth, mobile_no, above_18, source_batch, source_landed_at)
SELECT DISTINCT ON (s.membership_id)
    s.membership_id, s.first_name, s.last_name, s.email, s.date_of_birth, s.mobile_no, s.above_18,
    %(batch)s, %(landed_at)s::timestamptz
FROM members_stage AS s
JOIN sales.members AS holder ON holder.membership_id = s.membership_id AND lower(holder.first_name) = lower(s.first_name)
ORDER BY s.membership_id, s.row_number DESC
ON CONFLICT (membership_id) DO UPDATE
SET first_name = EXCLUDED.first_name,
    last_name = EXCLUDED.last_name,
    email = EXCLUDED.email,
    date_of_birth = EXCLUDED.date_of_birth,
    mobile_no = EXCLUDED.mobile_no,
    source_batch = EXCLUDED.source_batch,
    source_landed_at = EXCLUDED.source_landed_at,
    updated_at = now()
WHERE (EXCLUDED.source_landed_at, EXCLUDED.source_batch) >= (m.source_landed_at, m.source_batch)
  AND (m.first_name, m.last_name, m.email, m.date_of_birth, m.mobile_no, m.source_batch, m.source_landed_at)
      IS DISTINCT FROM
      (EXCLUDED.first_name, EXCLUDED.last_name, EXCLUDED.email, EXCLUDED.date_of_birth, EXCLUDED.mobile_no,
       EXCLUDED.source_batch, EXCLUDED.source_landed_at)
