-- PostgreSQL: is every applicant of the batch (temp table members_stage) accounted for in sales.members?
-- missing: their membership ID has no member at all.
-- different: the member is them (same first name) and this batch's values should have won (no file that
--   landed later holds the member), but the member's values are not their latest row's.
-- unrecorded: someone else holds the ID and the applicant is not in sales.membership_id_collisions.
-- Every lookup goes through a key, so it costs O(the batch) whatever the tables' sizes.
WITH latest AS (
    SELECT DISTINCT ON (s.membership_id, lower(s.first_name)) s.*, lower(s.first_name) AS person
    FROM members_stage AS s
    ORDER BY s.membership_id, lower(s.first_name), s.row_number DESC
)
SELECT
    count(*) FILTER (WHERE m.membership_id IS NULL) AS missing,
    count(*) FILTER (
        WHERE lower(m.first_name) = l.person
          AND (m.source_landed_at, m.source_batch) <= (%(landed_at)s::timestamptz, %(batch)s)
          AND (m.first_name, m.last_name, m.email, m.date_of_birth, m.mobile_no)
              IS DISTINCT FROM (l.first_name, l.last_name, l.email, l.date_of_birth, l.mobile_no)
    ) AS different,
    count(*) FILTER (
        WHERE lower(m.first_name) <> l.person
          AND NOT EXISTS (SELECT FROM sales.membership_id_collisions AS c
                          WHERE c.membership_id = l.membership_id AND c.batch = %(batch)s
                            AND lower(c.first_name) = l.person)
    ) AS unrecorded
FROM latest AS l
LEFT JOIN sales.members AS m USING (membership_id)
