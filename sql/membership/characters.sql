-- DuckDB macro shared by classify_applications.sql and classify_birthdays.sql: does `text` hold a control
-- character? The C0/C1 controls other than whitespace, every format character (\p{Cf}: zero-width
-- spaces, bidirectional overrides, byte-order marks, ...) and the other characters that show nothing:
-- Unicode's default-ignorable code points but the variation selectors (Hangul fillers, the combining
-- grapheme joiner, ...) and the blank Braille pattern (U+2800). (classify_applications.sql's first test
-- of a name spells the same class out inside a larger one: a single pass over the name.)
CREATE OR REPLACE TEMP MACRO has_control_character(text) AS
    regexp_matches(text, '[\x00-\x08\x0E-\x1F\x7F-\x84\x86-\x9F\p{Cf}\x{34F}\x{115F}\x{1160}\x{17B4}\x{17B5}\x{180B}-\x{180F}\x{2065}\x{2800}\x{3164}\x{FFA0}\x{FFF0}-\x{FFF8}\x{E0000}-\x{E00FF}\x{E01F0}-\x{E0FFF}]');
