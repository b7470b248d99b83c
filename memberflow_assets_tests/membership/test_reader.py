"""The reader's dialect (docs/membership.md "Reading a file"), through read_records on bytes."""

import pytest

from memberflow_assets.membership import reader
from memberflow_assets.membership.reader import ApplicationFileError, read_records

HEADER = b"name,email,date_of_birth,mobile_no"


def records(data: bytes) -> list[dict]:
    return read_records(data, "f.csv").records.to_pylist()


def fields(data: bytes) -> list[tuple]:
    return [(r["name"], r["email"], r["date_of_birth"], r["mobile_no"], r["malformed_record"]) for r in records(data)]


def problem(data: bytes) -> tuple[str, str]:
    with pytest.raises(ApplicationFileError) as raised:
        read_records(data, "f.csv")
    return raised.value.problem, raised.value.detail


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"a,b,c,d", ("a", "b", "c", "d", False)),
        (b'"a, Jr.","b""q",c,d', ("a, Jr.", 'b"q', "c", "d", False)),
        (b'"",,"",', ("", "", "", "", False)),
        (b'O"Neil,b,c,d', ('O"Neil', "b", "c", "d", False)),  # a quote inside an unquoted field is a character
        (b'"unclosed,b,c,d', ('"unclosed', "b", "c", "d", True)),
        (b'"a"x,b,c,d', ('"a"x', "b", "c", "d", True)),  # text after a closing quote
        (b"a,b,c", ("a", "b", "c", "", True)),  # too few fields
        (b"a,b,c,d,e", ("a", "b", "c", "d", True)),  # too many
        (b"a,b\x00,c,d", ("a", "b\x00", "c", "d", False)),  # a NUL is a value's problem (the rules'), not the file's
        ("é,ü,ß,中".encode(), ("é", "ü", "ß", "中", False)),
    ],
)
def test_one_record_per_line(line, expected):
    assert fields(HEADER + b"\n" + line + b"\nz,z,z,z\n") == [expected, ("z", "z", "z", "z", False)]


def test_a_malformed_record_keeps_its_exact_text_and_its_line():
    data = HEADER + b'\r\nok,b,c,d\r\n"broken, "x",c,d\r\nok2,b,c,d'
    rows = records(data)
    assert [(row["line_number"], row["raw_record"]) for row in rows] == [
        (2, None),
        (3, '"broken, "x",c,d'),
        (4, None),
    ]


def malformed_lines(data: bytes) -> list[tuple[int, bool]]:
    return [(row["line_number"], row["malformed_record"]) for row in records(data)]


def test_a_quoted_field_over_several_lines_makes_each_of_them_malformed():
    """RFC 4180 lets a quoted field hold line breaks: the line that opens it and every line it runs on to
    are malformed, so a fragment (`Lee",b,c,d`, four fields) is never read as an application."""
    data = HEADER + b'\nok,b,c,d\n"Ann\nLee",b,c,d\n"Bo\nmiddle ""quoted""\n\nNg",b,c,d\nok2,b,c,d\n'
    assert malformed_lines(data) == [(2, False), (3, True), (4, True), (5, True), (6, True), (8, True), (9, False)]
    assert records(data)[2]["raw_record"] == 'Lee",b,c,d'  # each line kept with its own text


def test_a_closing_line_that_opens_another_quoted_field_continues_it():
    data = HEADER + b'\n"a\nb",x,"c\nd",y,z,w\nok,b,c,d\n'  # `d",y,z,w` alone would be four fields
    assert malformed_lines(data) == [(2, True), (3, True), (4, True), (5, False)]


@pytest.mark.parametrize(
    "after",
    [
        [b"g,h,i,j"] * reader.MAX_CONTINUED_LINES + [b'k",l,m,n'],  # closed beyond the next few lines
        [b'O"Neil,b,c,d', b'k",l,m,n'],  # the first line with a quote of its own does not close it
        [b"g,h,i,j", b'k"x,l,m,n'],  # closed with text after the closing quote
    ],
)
def test_a_stray_quote_no_line_closes_soon_after_takes_only_its_own_line(after):
    data = HEADER + b'\n"stray,b,c,d\n' + b"\n".join(after) + b"\n"
    flags = malformed_lines(data)
    assert flags[0] == (2, True) and not any(malformed for _, malformed in flags[1:])


def test_a_line_that_is_not_utf8_is_a_malformed_record_of_its_own():
    data = HEADER + b"\nok,b,c,d\nJos\xe9 Lee,b,c,d\r\n\xff,b\xc3,c\nok2,b,c,d\n\xe9\n\x00,b\x00,c,d\n"
    rows = records(data)
    assert [(row["line_number"], row["malformed_record"], row["raw_record"]) for row in rows] == [
        (2, False, None),
        (3, True, "Jos\\xe9 Lee,b,c,d"),  # the invalid byte shown, the CRLF still the line's end
        (4, True, "\\xff,b\\xc3,c"),
        (5, False, None),
        (6, True, "\\xe9"),
        (7, False, None),  # a NUL beside non-UTF-8 rows is still a value's problem, not a binary file
    ]
    assert rows[1]["name"] == "Jos\\xe9 Lee" and rows[2]["email"] == "b\\xc3"


def test_bom_blank_lines_and_line_ends():
    data = (
        b"\xef\xbb\xbf\r\n \t\n\n"
        + b"Name , EMAIL ,date_of_birth,Mobile_No,extra\r\n\n"
        + b"a,b,c,d,e\n   \n"
        + b"f,g,h,i,j"
    )
    read = read_records(data, "f.csv")
    assert read.header_line == 4
    assert read.columns == ("Name", "EMAIL", "date_of_birth", "Mobile_No", "extra")
    assert [row["line_number"] for row in read.records.to_pylist()] == [6, 8]
    assert read.records["mobile_no"].to_pylist() == ["d", "i"]  # no terminator left on the last field
    assert (read.lines_after_header, read.blank_lines) == (4, 2)


@pytest.mark.parametrize("ends", [b"\r", b"\r\n\r", b"\n\r"])
def test_a_cr_alone_ends_a_line_so_no_two_records_are_merged(ends):
    """Old Mac files end lines with a CR alone, and a row pasted from one brings its CR: each line is a
    record of its own, counted as one by the bytes (rows_conserved) too."""
    data = b"\r\n" + HEADER + ends + b"a,b,c,d" + ends + b"e,f,g,h\r\n" + b"i,j,k,l" + ends
    read = read_records(data, "f.csv")
    assert read.header_line == 2
    assert fields(data) == [(*"abcd", False), (*"efgh", False), (*"ijkl", False)]
    assert read.lines_after_header == read.records.num_rows + read.blank_lines


def test_columns_in_any_order_and_extra_columns():
    data = b"mobile_no,x,EMAIL,date_of_birth,name\n1,2,3,4,5\n"
    assert fields(data) == [("5", "3", "4", "1", False)]


def test_a_header_only_file_has_no_records():
    for data in (HEADER, HEADER + b"\n", HEADER + b"\r\n\r\n"):
        read = read_records(data, "f.csv")
        assert read.records.num_rows == 0 and read.lines_after_header == read.blank_lines


@pytest.mark.parametrize(
    ("data", "expected_problem", "detail"),
    [
        (b"", "empty_file", "no content"),
        (b"\n \r\n\t\n", "empty_file", "no content"),
        (b"\xff\xfen\x00a\x00", "not_utf8", "UTF-16"),
        (b"\n\nname,em\xe9il,date_of_birth,mobile_no\nok,b,c,d\n", "not_utf8", "line 3 (the header): byte 8"),
        (b"\x89PNG\r\n\x1a\nname,email,date_of_birth,mobile_no\n\x00\x00", "not_csv", "binary"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not_csv", "binary"),
        (b'\n"name,email,date_of_birth,mobile_no\n', "not_csv", "line 2"),
        (b"name,email,date_of_birth,mobile_no\x00\n", "not_csv", "NUL"),
        (b" \r\r\nname,\xe9mail,date_of_birth,mobile_no\n", "not_utf8", "line 3 (the header): byte 6"),  # lone CR
        (b"name;email;date_of_birth;mobile_no\n1;2;3;4\n", "missing_columns", "separator must be a comma"),
        (b"\n\nAnn Lee,ann@example.com,1990-01-01,81234567\n", "missing_columns", "line 3"),
        (b"name,NAME,email,date_of_birth,mobile_no\n", "duplicate_columns", "name"),
    ],
)
def test_files_that_cannot_be_read(data, expected_problem, detail):
    found, text = problem(data)
    assert found == expected_problem and detail in text
    assert "ann@example.com" not in text and "Ann" not in text  # a reason never quotes the data


@pytest.mark.parametrize("buffer_shift", [4, 31])
def test_lines_are_the_files_lines_without_terminators(monkeypatch, buffer_shift):
    """The line split (string views over the file's bytes, a data buffer every 2**buffer_shift bytes: small
    here, so that a file beyond 2 GiB is exercised in miniature) gives each line's exact text."""
    monkeypatch.setattr(reader, "_VIEW_BUFFER_SHIFT", buffer_shift)
    lines_given = ["", "a", "twelve bytes", "thirteen byte", "ünïcödé, beyond twelve bytes", "x\r", " "]
    text = "\r\n".join(lines_given) + "\nlast\r\rafter a CR alone\r\n\r\rend"
    data = text.encode()
    split = reader._split_lines(data, 0)
    lines = split.views(0, len(split))
    lines.validate(full=True)
    # a CR before an LF belongs to it; a CR alone ends a line of its own
    expected = ["", "a", "twelve bytes", "thirteen byte", "ünïcödé, beyond twelve bytes", "x", "", " ", "last", ""]
    expected += ["after a CR alone", "", "", "end"]
    assert lines.to_pylist() == expected
    assert [split.text(index) for index in range(len(split))] == expected
