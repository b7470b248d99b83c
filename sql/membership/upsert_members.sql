-- Upsert the staged members (temp table members_stage, same columns) into sales.members.
-- Only rows whose values changed are written, so reruns touch nothing.
INSERT INTO sales.members AS m
    (membership_id, first_name, last_name, email, date_of_birth, mobile_no, above_18, source_batch)
SELECT membership_id, first_name, last_name, email, date_of_birth, mobile_no, above_18, source_batch
FROM members_stage
ORDER BY membership_id
ON CONFLICT (membership_id) DO UPDATE
SET first_name = EXCLUDED.first_name,
    last_name = EXCLUDED.last_name,
    email = EXCLUDED.email,
    date_of_birth = EXCLUDED.date_of_birth,
    mobile_no = EXCLUDED.mobile_no,
    source_batch = EXCLUDED.source_batch,
    updated_at = now()
WHERE (m.first_name, m.last_name, m.email, m.date_of_birth, m.mobile_no, m.source_batch)
      IS DISTINCT FROM
      (EXCLUDED.first_name, EXCLUDED.last_name, EXCLUDED.email, EXCLUDED.date_of_birth,
       EXCLUDED.mobile_no, EXCLUDED.source_batch);
