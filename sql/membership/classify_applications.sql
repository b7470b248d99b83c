-- Membership application rules (contract: DESIGN.md "membership: business rules"; docs/membership.md).
-- Input: relation `applications` with text columns name, email, date_of_birth, mobile_no, a boolean
-- malformed_record (the reader's verdict on the record) and any other columns, which are passed through
-- after the rules' output columns.
-- Parameters: $cutoff = the latest birth date that is 18 or older on the reference date; $max_name,
-- $max_email, $max_date_of_birth, $max_mobile_no = the longest value (in characters, after whitespace
-- is cleaned) a field may have.
-- Output: one row per input row, in input order.
--
-- Whitespace is Unicode's White_Space, spelled out: [\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}
-- \x{2029}\x{202F}\x{205F}\x{3000}]. Control characters are the other C0/C1 controls and every format
-- character (\p{Cf}: zero-width spaces, bidirectional overrides, byte-order marks, ...).
-- Speed matters: the common case pays for one cheap regex test per field, and only values that need
-- cleaning pay for the cleaning. Internal columns start with `_`.
WITH cleaned AS (
    SELECT
        *,
        CASE WHEN regexp_matches(name, '[\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]{2}|[\t-\r\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]|^ | $')
             THEN trim(regexp_replace(name, '[\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]+', ' ', 'g'))
             ELSE coalesce(name, '') END AS _name,
        CASE WHEN regexp_matches(email, '^[\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]|[\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]$')
             THEN regexp_replace(email, '^[\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]+|[\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]+$', '', 'g')
             ELSE coalesce(email, '') END AS _email,
        CASE WHEN regexp_matches(date_of_birth, '^[\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]|[\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]$')
             THEN regexp_replace(date_of_birth, '^[\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]+|[\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]+$', '', 'g')
             ELSE coalesce(date_of_birth, '') END AS _dob_text,
        CASE WHEN regexp_matches(mobile_no, '[\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]')
             THEN regexp_replace(mobile_no, '[\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]', '', 'g')
             ELSE coalesce(mobile_no, '') END AS _mobile_no,
        -- one regex over the four fields: a control character cannot appear where they meet
        coalesce(regexp_matches(concat(name, email, date_of_birth, mobile_no),
                                '[\x00-\x08\x0E-\x1F\x7F-\x84\x86-\x9F\p{Cf}]'), false) AS _control_characters
    FROM applications
),
named AS (
    SELECT
        *,
        -- The four accepted shapes, rearranged to ISO.
        CASE WHEN regexp_full_match(_dob_text, '[0-9]{4}-[0-9]{2}-[0-9]{2}') THEN _dob_text
             WHEN regexp_full_match(_dob_text, '[0-9]{4}/[0-9]{2}/[0-9]{2}') THEN replace(_dob_text, '/', '-')
             WHEN regexp_full_match(_dob_text, '[0-9]{2}/[0-9]{2}/[0-9]{4}')
                 THEN _dob_text[7:10] || '-' || _dob_text[1:2] || '-' || _dob_text[4:5]
             WHEN regexp_full_match(_dob_text, '[0-9]{2}-[0-9]{2}-[0-9]{4}')
                 THEN _dob_text[7:10] || '-' || _dob_text[4:5] || '-' || _dob_text[1:2]
        END AS _dob_iso,
        -- strlen (bytes, free) >= length (characters, a scan): only long values are measured
        CASE WHEN strlen(_name) > $max_name OR strlen(_email) > $max_email
                  OR strlen(_dob_text) > $max_date_of_birth OR strlen(_mobile_no) > $max_mobile_no
             THEN length(_name) > $max_name OR length(_email) > $max_email
                  OR length(_dob_text) > $max_date_of_birth OR length(_mobile_no) > $max_mobile_no
             ELSE false END AS _too_long
    FROM cleaned
),
parsed AS (
    SELECT
        *,
        -- Titles are removed from the front and suffixes from the end, as often as they repeat
        -- (whitespace is single spaces by now).
        rtrim(
            regexp_replace(
                regexp_replace(_name, '^(?i:(?:mr|mrs|ms|miss|dr|mx|prof)(?:\. *| +|$))+', ''),
                '(?i:(?:^|[ ,]+)(?:jr|sr|ii|iii|iv|md|dds|dvm|phd|esq)\.?)+$', ''),
            ' ,') AS _core_name,
        -- TRY_CAST rejects impossible dates (1990-02-30); there is no year 0000.
        CASE WHEN NOT starts_with(_dob_iso, '0000') THEN TRY_CAST(_dob_iso AS DATE) END AS _dob
    FROM named
),
judged AS (
    SELECT
        *,
        split_part(_core_name, ' ', -1) AS _last_name,
        replace(_dob_iso, '-', '') AS _dob_compact,
        concat_ws(';',
            CASE WHEN _name = '' THEN 'missing_name'
                 WHEN _core_name = '' THEN 'missing_last_name' END,
            CASE WHEN _dob IS NULL THEN 'invalid_date_of_birth' END,
            CASE WHEN _dob > $cutoff THEN 'under_18' END,
            CASE WHEN NOT regexp_full_match(_mobile_no, '[0-9]{8}') THEN 'invalid_mobile_no' END,
            CASE WHEN NOT regexp_full_match(
                _email, '[A-Za-z0-9!#$%&''*+/=?^_`{|}~.-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+(?i:com|net)')
                 THEN 'invalid_email' END,
            CASE WHEN _too_long THEN 'field_too_long' END,
            CASE WHEN _control_characters THEN 'control_characters' END,
            CASE WHEN malformed_record THEN 'malformed_record' END
        ) AS _reasons
    FROM parsed
)
SELECT
    _name AS name,
    left(_core_name, greatest(length(_core_name) - length(_last_name) - 1, 0)) AS first_name,
    _last_name AS last_name,
    _email AS email,
    CASE WHEN _dob IS NULL THEN _dob_text ELSE _dob_compact END AS date_of_birth,
    _mobile_no AS mobile_no,
    _dob <= $cutoff AS above_18,
    _reasons = '' AS is_successful,
    CASE WHEN _reasons = '' THEN _last_name || '_' || left(sha256(_dob_compact), 5) END AS membership_id,
    _reasons AS rejection_reasons,
    -- the other input columns (malformed_record is always one of them)
    COLUMNS(lambda c: NOT starts_with(c, '_') AND c NOT IN ('name', 'email', 'date_of_birth', 'mobile_no'))
FROM judged
