-- PostgreSQL: is every applicant of the batch (temp table members_stage) accounted for in sales.members?
-- missing: their membership ID has no member at all.
-- different: the member is them (same first name), this is their latest row in the batch and no file
--   that landed later holds the member, yet the member's values are not this row's.
-- unrecorded: someone else holds the ID and the row is not in sales.membership_id_collisions.
-- Members are joined by key, and only a colliding row looks itself up in the collisions table (by its
-- primary key), so it costs O(the batch) whatever the tables' sizes. (A join there too would be planned
-- on the collisions table's statistics, from before this batch's rows: as a few rows, scanned whole
-- for every row of the batch.)
WITH staged AS (
    SELECT
        s.*,
        lower(s.first_name) AS person,
        row_number() OVER (PARTITION BY s.membership_id, lower(s.first_name) ORDER BY s.row_number DESC) = 1
            AS latest_of_person
    FROM members_stage AS s
)
SELECT
    count(*) FILTER (WHERE m.membership_id IS NULL) AS missing,
    count(*) FILTER (
        WHERE s.latest_of_person
          AND lower(m.first_name) = s.person
          AND (m.source_landed_at, m.source_batch) <= (%(landed_at)s::timestamptz, %(batch)s)
          AND (m.first_name, m.last_name, m.email, m.date_of_birth, m.mobile_no)
              IS DISTINCT FROM (s.first_name, s.last_name, s.email, s.date_of_birth, s.mobile_no)
    ) AS different,
    count(*) FILTER (
        WHERE lower(m.first_name) <> s.person
          AND NOT EXISTS (SELECT FROM sales.membership_id_collisions AS c
                          WHERE c.batch = %(batch)s AND c.row_number = s.row_number
                            AND c.membership_id = s.membership_id)
    ) AS unrecorded
FROM staged AS s
LEFT JOIN sales.members AS m ON m.membership_id = s.membership_id
