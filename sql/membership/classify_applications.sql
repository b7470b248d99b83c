-- Membership application rules (contract: DESIGN.md "membership: business rules"; docs/membership.md).
-- Input: relation `applications` with text columns name, email, date_of_birth, mobile_no, a boolean
-- malformed_record (the reader's verdict on the record), the verdict of classify_birthdays.sql on the
-- row's date_of_birth (_dob_valid, _above_18, _id_suffix, _dob_control, _dob_too_long); the macro
-- has_control_character (characters.sql).
-- Parameters: $max_name, $max_email, $max_mobile_no = the longest value (in characters, after whitespace
-- is cleaned) a field may have.
-- Output: the rules' columns, one row per input row, in input order, without date_of_birth (its shown
-- form is the verdict's) and without the record's other columns: rules.py puts them in beside, which
-- saves taking them through the query.
--
-- Whitespace is Unicode's White_Space, spelled out: [\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}
-- \x{2029}\x{202F}\x{205F}\x{3000}]. Control characters are those of the macro has_control_character
-- (characters.sql), which the first test of a name spells out.
-- Speed matters (a million rows in about a second on two cores): the common case pays for one cheap
-- test per field, and only values that need it pay for cleaning or a closer look. A valid e-mail
-- address holds neither whitespace nor control characters, nor does a valid mobile number once its
-- ASCII spaces are gone, so only the others are cleaned and searched. Internal columns start with `_`.
WITH given AS (
    SELECT
        *,
        -- whitespace to clean, or a control character: a closer look below
        coalesce(regexp_matches(name, '[\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]{2}|[\t-\r\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}\x00-\x08\x0E-\x1F\x7F-\x84\x86-\x9F\p{Cf}\x{34F}\x{115F}\x{1160}\x{17B4}\x{17B5}\x{180B}-\x{180F}\x{2065}\x{2800}\x{3164}\x{FFA0}\x{FFF0}-\x{FFF8}\x{E0000}-\x{E00FF}\x{E01F0}-\x{E0FFF}]|^ | $'), false) AS _name_unusual,
        coalesce(regexp_full_match(email, '[A-Za-z0-9!#$%&''*+/=?^_`{|}~.-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+(?i:com|net)'), false) AS _email_valid_as_given,
        -- a number written in groups ("9123 4567") loses its spaces by a plain replace, not a regular expression
        CASE WHEN contains(mobile_no, ' ') THEN replace(mobile_no, ' ', '') ELSE coalesce(mobile_no, '') END
            AS _mobile_unspaced,
        coalesce(regexp_full_match(_mobile_unspaced, '[0-9]{8}'), false) AS _mobile_valid_unspaced
    FROM applications
),
cleaned AS (
    SELECT
        *,
        CASE WHEN _name_unusual
             THEN trim(regexp_replace(name, '[\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]+', ' ', 'g'))
             ELSE coalesce(name, '') END AS _name,
        CASE WHEN _email_valid_as_given THEN email
             ELSE regexp_replace(coalesce(email, ''), '^[\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]+|[\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]+$', '', 'g')
             END AS _email,
        CASE WHEN _mobile_valid_unspaced THEN _mobile_unspaced
             ELSE regexp_replace(_mobile_unspaced, '[\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]', '', 'g')
             END AS _mobile_no,
        -- CASE, so each search runs only where its condition holds
        CASE WHEN _dob_control THEN true
             WHEN _name_unusual AND has_control_character(name) THEN true
             WHEN NOT _email_valid_as_given AND has_control_character(email) THEN true
             WHEN NOT _mobile_valid_unspaced AND has_control_character(mobile_no) THEN true
             ELSE false END AS _control_characters
    FROM given
),
titled AS (
    SELECT
        *,
        -- Titles are removed from the front and suffixes from the end, as often as they repeat
        -- (whitespace is single spaces by now). Only a name starting with M, D or P can have a title.
        -- (Not `ascii(_name) IN (...)`: DuckDB plans a list of constants as a join, which does not keep
        -- the rows' order.)
        regexp_replace(
            CASE WHEN contains('MmDdPp', left(_name, 1))
                 THEN regexp_replace(_name, '^(?i:(?:mr|mrs|ms|miss|dr|mx|prof)(?:\. *| +|$))+', '')
                 ELSE _name END,
            '(?i:(?:^|[ ,]+)(?:jr|sr|ii|iii|iv|md|dds|dvm|phd|esq)\.?)+$', '') AS _untitled
    FROM cleaned
),
named AS (
    SELECT
        *,
        CASE WHEN ends_with(_untitled, ',') OR ends_with(_untitled, ' ') THEN rtrim(_untitled, ' ,')
             ELSE _untitled END AS _core_name,
        -- strlen (bytes, free) >= length (characters, a scan): only long values are measured
        CASE WHEN _dob_too_long THEN true
             WHEN strlen(_name) > $max_name OR strlen(_email) > $max_email OR strlen(_mobile_no) > $max_mobile_no
             THEN length(_name) > $max_name OR length(_email) > $max_email OR length(_mobile_no) > $max_mobile_no
             ELSE false END AS _too_long
    FROM titled
),
judged AS (
    SELECT
        *,
        split_part(_core_name, ' ', -1) AS _last_name,
        CASE WHEN _mobile_valid_unspaced THEN true ELSE regexp_full_match(_mobile_no, '[0-9]{8}') END AS _mobile_ok,
        CASE WHEN _email_valid_as_given THEN true ELSE regexp_full_match(
            _email, '[A-Za-z0-9!#$%&''*+/=?^_`{|}~.-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+(?i:com|net)')
            END AS _email_ok
    FROM named
),
reasoned AS (
    SELECT
        *,
        -- most rows pass every rule: their (empty) list of reasons is not built
        CASE WHEN _core_name <> '' AND _dob_valid AND _above_18 AND _mobile_ok AND _email_ok
                  AND NOT _too_long AND NOT _control_characters AND NOT malformed_record THEN ''
             ELSE concat_ws(';',
                CASE WHEN _name = '' THEN 'missing_name'
                     WHEN _core_name = '' THEN 'missing_last_name' END,
                CASE WHEN NOT _dob_valid THEN 'invalid_date_of_birth' END,
                CASE WHEN NOT _above_18 THEN 'under_18' END,
                CASE WHEN NOT _mobile_ok THEN 'invalid_mobile_no' END,
                CASE WHEN NOT _email_ok THEN 'invalid_email' END,
                CASE WHEN _too_long THEN 'field_too_long' END,
                CASE WHEN _control_characters THEN 'control_characters' END,
                CASE WHEN malformed_record THEN 'malformed_record' END)
             END AS _reasons
    FROM judged
)
SELECT
    _name AS name,
    left(_core_name, greatest(length(_core_name) - length(_last_name) - 1, 0)) AS first_name,
    _last_name AS last_name,
    _email AS email,
    _mobile_no AS mobile_no,
    _above_18 AS above_18,
    _reasons = '' AS is_successful,
    CASE WHEN _reasons = '' THEN _last_name || '_' || _id_suffix END AS membership_id,
    _reasons AS rejection_reasons
FROM reasoned
