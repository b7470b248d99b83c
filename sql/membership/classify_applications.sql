-- Membership application rules (contract: DESIGN.md "membership: business rules"; README "Membership rules").
-- Input: relation `applications` with text columns name, email, date_of_birth, mobile_no.
-- Parameter: $cutoff = the latest birth date that is 18 or older on the reference date.
-- Output: one row per input row, in input order.
--
-- Speed matters (the aim is a million rows a second on two cores): the common case pays for one
-- cheap regex test per field, and only values that need cleaning pay for the cleaning.
WITH cleaned AS (
    SELECT
        CASE WHEN regexp_matches(name, '\s\s|[^ \S]|^\s|\s$')
             THEN trim(regexp_replace(name, '\s+', ' ', 'g')) ELSE coalesce(name, '') END AS name,
        CASE WHEN regexp_matches(email, '^\s|\s$')
             THEN regexp_replace(email, '^\s+|\s+$', '', 'g') ELSE coalesce(email, '') END AS email,
        CASE WHEN regexp_matches(date_of_birth, '^\s|\s$')
             THEN regexp_replace(date_of_birth, '^\s+|\s+$', '', 'g') ELSE coalesce(date_of_birth, '') END AS dob_text,
        CASE WHEN regexp_matches(mobile_no, '\s')
             THEN regexp_replace(mobile_no, '\s', '', 'g') ELSE coalesce(mobile_no, '') END AS mobile_no
    FROM applications
),
named AS (
    SELECT
        *,
        -- The four accepted shapes, rearranged to ISO.
        CASE WHEN regexp_full_match(dob_text, '[0-9]{4}-[0-9]{2}-[0-9]{2}') THEN dob_text
             WHEN regexp_full_match(dob_text, '[0-9]{4}/[0-9]{2}/[0-9]{2}') THEN replace(dob_text, '/', '-')
             WHEN regexp_full_match(dob_text, '[0-9]{2}/[0-9]{2}/[0-9]{4}')
                 THEN dob_text[7:10] || '-' || dob_text[1:2] || '-' || dob_text[4:5]
             WHEN regexp_full_match(dob_text, '[0-9]{2}-[0-9]{2}-[0-9]{4}')
                 THEN dob_text[7:10] || '-' || dob_text[4:5] || '-' || dob_text[1:2]
        END AS dob_iso
    FROM cleaned
),
parsed AS (
    SELECT
        *,
        -- Titles are removed from the front and suffixes from the end, as often as they repeat.
        rtrim(
            regexp_replace(
                regexp_replace(name, '^(?i:(?:mr|mrs|ms|miss|dr|mx|prof)(?:\.\s*|\s+|$))+', ''),
                '(?i:(?:^|[\s,]+)(?:jr|sr|ii|iii|iv|md|dds|dvm|phd|esq)\.?)+$', ''),
            ' ,') AS core_name,
        -- TRY_CAST rejects impossible dates (1990-02-30); there is no year 0000.
        CASE WHEN NOT starts_with(dob_iso, '0000') THEN TRY_CAST(dob_iso AS DATE) END AS dob
    FROM named
),
judged AS (
    SELECT
        *,
        split_part(core_name, ' ', -1) AS last_name,
        replace(dob_iso, '-', '') AS dob_compact,
        dob <= $cutoff AS above_18,
        concat_ws(';',
            CASE WHEN name = '' THEN 'missing_name'
                 WHEN core_name = '' THEN 'missing_last_name' END,
            CASE WHEN dob IS NULL THEN 'invalid_date_of_birth' END,
            CASE WHEN dob > $cutoff THEN 'under_18' END,
            CASE WHEN NOT regexp_full_match(mobile_no, '[0-9]{8}') THEN 'invalid_mobile_no' END,
            CASE WHEN NOT regexp_full_match(
                email, '[A-Za-z0-9!#$%&''*+/=?^_`{|}~.-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+(?i:com|net)')
                 THEN 'invalid_email' END
        ) AS rejection_reasons
    FROM parsed
)
SELECT
    name,
    left(core_name, greatest(length(core_name) - length(last_name) - 1, 0)) AS first_name,
    last_name,
    email,
    CASE WHEN dob IS NULL THEN dob_text ELSE dob_compact END AS date_of_birth,
    mobile_no,
    above_18,
    rejection_reasons = '' AS is_successful,
    CASE WHEN rejection_reasons = ''
         THEN last_name || '_' || left(sha256(dob_compact), 5) END AS membership_id,
    rejection_reasons
FROM judged
