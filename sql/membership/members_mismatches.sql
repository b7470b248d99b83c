-- Staged members (members_stage) that are missing from sales.members, and those whose values differ.
SELECT
    count(*) FILTER (WHERE m.membership_id IS NULL) AS missing,
    count(*) FILTER (
        WHERE m.membership_id IS NOT NULL
          AND (m.first_name, m.last_name, m.email, m.date_of_birth, m.mobile_no)
              IS DISTINCT FROM (s.first_name, s.last_name, s.email, s.date_of_birth, s.mobile_no)
    ) AS different
FROM members_stage AS s
LEFT JOIN sales.members AS m USING (membership_id)
