-- DuckDB: the records of an applications file, one row per line after the header, in file order.
-- Input: relation `lines` (line_number, line = the line's text without its LF or CRLF, broken_line = the
-- line is malformed whatever its fields: its bytes were not UTF-8 and `line` shows them escaped, or a
-- quoted field opened on a line before runs on to it) and the macros csv_fields and record_field
-- (csv_fields.sql).
-- Parameters: $field_count (fields in the header) and the 1-based positions of the required columns.
-- A line whose quoting is broken, whose field count differs from the header's or that is a broken_line
-- is malformed: its fields are shown as a plain split on commas and its text is kept in raw_record.
WITH parsed AS (
    SELECT line_number, line, broken_line, csv_fields(line) AS fields FROM lines
),
judged AS (
    SELECT
        line_number,
        line,
        fields,
        len(fields) AS field_count,
        coalesce(len(fields) <> $field_count, true) OR broken_line AS malformed_record
    FROM parsed
)
SELECT
    line_number,
    -- only spaces, tabs and CRs: not a record (checked only where a record has a single field)
    CASE WHEN field_count > 1 THEN false ELSE regexp_full_match(line, '[ \t\r]*') END AS blank,
    malformed_record,
    CASE WHEN malformed_record THEN line END AS raw_record,
    record_field(fields, line, malformed_record, $name_field) AS name,
    record_field(fields, line, malformed_record, $email_field) AS email,
    record_field(fields, line, malformed_record, $date_of_birth_field) AS date_of_birth,
    record_field(fields, line, malformed_record, $mobile_no_field) AS mobile_no
FROM judged
