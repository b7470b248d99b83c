-- DuckDB: deterministic demo transaction lines for the members in table `new_members` (membership_id),
-- buying from table `catalogue` (item_no 0..n-1, item_id, cost, weight_kg). Every number is derived
-- from md5(seed/membership_id/...), so a member's transactions depend only on the seed, the member and
-- the catalogue - not on which other members exist or in what order they were generated.
-- Parameters: $seed, $transactions_per_member (average), $max_lines.
WITH members AS (
    SELECT membership_id, md5_number(concat($seed, '/', membership_id)) AS h
    FROM new_members
),
transactions AS (
    SELECT membership_id, unnest(range(CAST(h % (2 * $transactions_per_member + 1) AS BIGINT))) AS transaction_no
    FROM members
),
lines AS (
    SELECT membership_id, transaction_no,
           unnest(range(1, 1 + CAST(md5_number(concat($seed, '/', membership_id, '/', transaction_no))
                                    % $max_lines AS BIGINT) + 1)) AS line_number
    FROM transactions
),
hashed AS (
    SELECT *, md5_number(concat($seed, '/', membership_id, '/', transaction_no, '/', line_number)) AS h
    FROM lines
),
picked AS (
    -- popular items first: item_no = floor(n * u^2), u uniform in [0, 1)
    SELECT *, CAST(floor((SELECT count(*) FROM catalogue) * power(CAST(h % 1000003 AS DOUBLE) / 1000003, 2)) AS BIGINT)
              AS item_no
    FROM hashed
)
SELECT
    h.membership_id,
    h.transaction_no,
    CAST(h.line_number AS SMALLINT) AS line_number,
    c.item_id,
    CASE WHEN (h.h >> 32) % 10 < 7 THEN 1 WHEN (h.h >> 32) % 10 < 9 THEN 2 ELSE 3 END AS quantity,
    c.cost AS unit_price,
    c.weight_kg AS unit_weight_kg
FROM picked h
JOIN catalogue c USING (item_no)
