-- The date_of_birth rules (contract: DESIGN.md "membership: business rules"), run once per distinct
-- text: a million applications hold a few tens of thousands of birthdays, so the date parsing and the
-- SHA-256 of the membership ID cost that many, not a million (rules.py maps the results back to rows).
-- Input: relation `birthdays` (date_of_birth: text, each distinct value once) and the macro
-- has_control_character (characters.sql). Parameters: $cutoff, and
-- $max_date_of_birth = the longest value (in characters, whitespace trimmed) the field may have.
-- Whitespace is Unicode's White_Space, as in classify_applications.sql.
WITH cleaned AS (
    SELECT
        date_of_birth,
        CASE WHEN regexp_matches(date_of_birth, '^[\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]|[\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]$')
             THEN regexp_replace(date_of_birth, '^[\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]+|[\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]+$', '', 'g')
             ELSE coalesce(date_of_birth, '') END AS text
    FROM birthdays
),
shaped AS (
    SELECT
        *,
        -- The four accepted shapes, rearranged to ISO.
        CASE WHEN regexp_full_match(text, '[0-9]{4}-[0-9]{2}-[0-9]{2}') THEN text
             WHEN regexp_full_match(text, '[0-9]{4}/[0-9]{2}/[0-9]{2}') THEN replace(text, '/', '-')
             WHEN regexp_full_match(text, '[0-9]{2}/[0-9]{2}/[0-9]{4}')
                 THEN text[7:10] || '-' || text[1:2] || '-' || text[4:5]
             WHEN regexp_full_match(text, '[0-9]{2}-[0-9]{2}-[0-9]{4}')
                 THEN text[7:10] || '-' || text[4:5] || '-' || text[1:2]
        END AS iso
    FROM cleaned
),
parsed AS (
    -- TRY_CAST rejects impossible dates (1990-02-30); there is no year 0000.
    SELECT *, CASE WHEN NOT starts_with(iso, '0000') THEN TRY_CAST(iso AS DATE) END AS day FROM shaped
)
SELECT
    date_of_birth,
    -- YYYYMMDD; an invalid value is kept as given (whitespace trimmed) so the unsuccessful file shows it
    CASE WHEN day IS NULL THEN text ELSE replace(iso, '-', '') END AS shown,
    day IS NOT NULL AS valid,
    day <= $cutoff AS above_18,
    CASE WHEN day IS NOT NULL THEN left(sha256(replace(iso, '-', '')), 5) END AS id_suffix,
    coalesce(has_control_character(date_of_birth), false) AS has_control,
    day IS NULL AND length(text) > $max_date_of_birth AS too_long
FROM parsed
