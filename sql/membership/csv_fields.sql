-- DuckDB macro: the fields of one CSV record (a line without its terminator), or NULL when its quoting
-- is broken. The dialect is docs/membership.md "Reading a file": comma-separated; a field that starts
-- with a double quote is quoted, runs to the quote that closes it ("" inside is one quote) and must be
-- followed by a comma or the end of the line; a quote inside an unquoted field is an ordinary character.
-- Records are lines, so a broken quote can only ever break its own record (but see opens_quoted_field).
CREATE OR REPLACE TEMP MACRO csv_fields(line) AS
    CASE
        WHEN NOT contains(line, '"') THEN string_split(line, ',')
        WHEN regexp_full_match(line, '(?:"(?:[^"]|"")*"|[^,"][^,]*|)(?:,(?:"(?:[^"]|"")*"|[^,"][^,]*|))*')
            -- every match starts at a comma (one is put in front), so empty fields are never skipped
            THEN list_transform(
                regexp_extract_all(',' || line, ',("(?:[^"]|"")*"|[^,"][^,]*|)', 1),
                lambda field: CASE WHEN starts_with(field, '"') THEN replace(field[2:-2], '""', '"') ELSE field END)
    END;

-- DuckDB macro: a record's field `number` (1-based) as parse_records.sql shows it: from `fields` (its
-- csv_fields) when the record is well-formed, which then has every field; else from a plain split on
-- commas when its quoting is broken, and '' for a field it lacks.
CREATE OR REPLACE TEMP MACRO record_field(fields, line, malformed, number) AS
    CASE WHEN NOT malformed THEN fields[number] ELSE coalesce(coalesce(fields, string_split(line, ','))[number], '') END;

-- DuckDB macros for a quoted field left open at the end of its line, which RFC 4180 continues on the next
-- lines (docs/membership.md "One record per line"): reader.continued_lines marks the lines it takes.
-- opens_quoted_field: the line's last field opens a quote that does not close on it.
CREATE OR REPLACE TEMP MACRO opens_quoted_field(line) AS
    contains(line, '"') AND regexp_full_match(line, '(?:(?:"(?:[^"]|"")*"|[^,"][^,]*|),)*"(?:[^"]|"")*');
-- A line read as the continuation of an open quoted field: still inside it (no quote of its own), closing
-- it with the rest of the line well-formed (`closes`), or closing it and opening another (`reopens`).
CREATE OR REPLACE TEMP MACRO stays_in_quoted_field(line) AS regexp_full_match(line, '(?:[^"]|"")*');
CREATE OR REPLACE TEMP MACRO closes_quoted_field(line) AS
    regexp_full_match(line, '(?:[^"]|"")*"(?:,(?:"(?:[^"]|"")*"|[^,"][^,]*|))*');
CREATE OR REPLACE TEMP MACRO reopens_quoted_field(line) AS
    regexp_full_match(line, '(?:[^"]|"")*"(?:,(?:"(?:[^"]|"")*"|[^,"][^,]*|))*,"(?:[^"]|"")*');
