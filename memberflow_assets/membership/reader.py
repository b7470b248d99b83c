"""Reading a landed applications file into records: strictly, one record per line. No Dagster.

The dialect (docs/membership.md "Reading a file"): UTF-8 with an optional BOM; lines end with LF, CRLF
or a CR alone (old Mac files, a row pasted from one), and every line is one record, so a broken quote can
only break its own record and no two records are ever merged; blank lines (spaces and tabs only) are
skipped anywhere, and the first non-blank line is the header. Fields are split by
`sql/membership/csv_fields.sql`.

A record that cannot be read as one application (broken quoting, more or fewer fields than the header)
is *malformed*: it is still a record of its own, with its text kept, and the rules make it
unsuccessful. So is a line whose bytes are not UTF-8 (its text is kept with each invalid byte shown as
`\\xNN`), and so is every line a quoted field runs on to (RFC 4180 lets a quoted field hold line breaks):
a fragment of a field is never taken for an application of its own (`continued_lines`). Only a file
that cannot be read at all raises `ApplicationFileError` and is quarantined: nothing but blank lines,
UTF-16/32, binary, or a header that is not UTF-8, is broken or lacks a required column.
Every file-level reason names the line it is about and never a local path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from memberflow_assets.membership import duck
from memberflow_assets.membership.rules import INPUT_COLUMNS
from memberflow_assets.settings import read_sql

_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_OR_32_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")
_NON_BLANK = re.compile(rb"[^ \t\r\n]")
_BINARY_SNIFF_BYTES = 65536
_NEWLINE_SEARCH_BYTES = 1 << 22
_OTHER_SEPARATORS = re.compile(r"[;\t|]")
_LONE_CR = re.compile(rb"\r(?!\n)")
_CSV_FIELDS = read_sql("membership/csv_fields.sql")
# A quoted field open at the end of its line takes the next lines up to the one that closes it, if one of
# the next few does: so a stray quote, which nothing closes, takes no line but its own.
MAX_CONTINUED_LINES = 4
_PARSE_RECORDS = read_sql("membership/parse_records.sql")


class ApplicationFileError(ValueError):
    """A landed file that cannot be read as membership applications."""

    def __init__(self, source_file: str, problem: str, detail: str):
        self.source_file = source_file
        # a short code: empty_file, not_utf8, not_csv, missing_columns, duplicate_columns
        self.problem = problem
        self.detail = detail
        super().__init__(f"{source_file}: {problem}: {detail}")


@dataclass(frozen=True)
class Records:
    """Records of consecutive lines: one row per record (non-blank line), in file order, with columns
    line_number, malformed_record, raw_record (the line's text when malformed, else null) and the
    required fields as text (never null); and how many of those lines were blank."""

    records: pa.Table
    blank_lines: int


@dataclass(frozen=True)
class ApplicationFile:
    """A file that can be read as applications: its header is checked and the whole file is valid UTF-8,
    so every file-level problem has been found (`open_file`); its records are read `chunk` by chunk,
    which can only find problems of single records."""

    source_file: str
    header_line: int
    columns: tuple[str, ...]
    lines_after_header: int  # counted in the raw bytes, independently of the parser
    body: Lines  # the lines after the header
    positions: dict[str, int]  # the 1-based position of each required column in the header
    continued: np.ndarray | None  # per body line: does a quoted field from a line before run on to it?

    def chunk(self, start: int, stop: int) -> Records:
        """The records of the body's lines [start, stop)."""
        first_line = self.header_line + 1 + start
        lines = pa.table(
            {
                "line_number": pa.array(np.arange(first_line, first_line + stop - start, dtype=np.int64)),
                "line": self.body.views(start, stop),
                "broken_line": self._broken_flags(start, stop),
            }
        )
        with duck.connect() as connection:
            connection.execute(_CSV_FIELDS)
            connection.register("lines", lines)
            parsed = connection.sql(
                _PARSE_RECORDS,
                params={
                    "field_count": len(self.columns),
                    **{f"{column}_field": self.positions[column] for column in INPUT_COLUMNS},
                },
            ).to_arrow_table()
        blank = parsed["blank"]
        blank_lines = int(pc.sum(blank).as_py() or 0)
        records = parsed.filter(pc.invert(blank)) if blank_lines else parsed  # no copy in the common case
        return Records(records.drop_columns(["blank"]), blank_lines)

    def _broken_flags(self, start: int, stop: int) -> pa.BooleanArray:
        """Per line [start, stop): malformed whatever its fields, as not UTF-8 or part of another line's field."""
        broken = np.zeros(stop - start, dtype=np.bool_)
        for flags in (self.body.undecodable, self.continued):
            if flags is not None:
                broken |= flags[start:stop]
        return pa.array(broken)


@dataclass(frozen=True)
class ApplicationRecords:
    """A whole file's records (`read_records`)."""

    records: pa.Table
    header_line: int
    columns: tuple[str, ...]
    lines_after_header: int  # counted in the raw bytes, independently of the parser
    blank_lines: int


def open_file(data: bytes, source_file: str) -> ApplicationFile:
    """A landed file's bytes, checked as a whole; raises ApplicationFileError for a file that is not one."""
    if data.startswith(_UTF16_OR_32_BOMS):
        raise ApplicationFileError(source_file, "not_utf8", "the file is UTF-16 or UTF-32 text (byte-order mark)")
    start = len(_UTF8_BOM) if data.startswith(_UTF8_BOM) else 0
    first_invalid = _first_invalid_utf8(data, start)
    lines = _split_lines(data, start)

    first_text = _NON_BLANK.search(data, start)
    if first_text is None:
        raise ApplicationFileError(source_file, "empty_file", "the file has no content (only blank lines, if any)")
    header_index = _count_terminators(data, start, first_text.start())
    header_line = header_index + 1
    header_end = int(lines.starts[header_index] + lines.lengths[header_index])
    try:
        if first_invalid is not None and first_invalid < header_end:  # before the header: blank lines only
            column = first_invalid - int(lines.starts[header_index]) + 1
            raise ApplicationFileError(
                source_file,
                "not_utf8",
                f"line {header_line} (the header): byte {column} is not UTF-8 (the file must be UTF-8 text)",
            )
        with duck.connect() as connection:
            connection.execute(_CSV_FIELDS)
            header = _read_header(source_file, connection, lines.text(header_index), header_line)
        positions = _required_positions(source_file, header, header_line)
    except ApplicationFileError:
        if first_invalid is not None and first_invalid < _BINARY_SNIFF_BYTES and b"\x00" in data[:_BINARY_SNIFF_BYTES]:
            raise ApplicationFileError(
                source_file, "not_csv", "the file contains NUL bytes and is not text: it is binary"
            ) from None
        raise
    body = (lines if first_invalid is None else _escaped_lines(data, start, lines)).after(header_index)
    return ApplicationFile(
        source_file=source_file,
        header_line=header_line,
        columns=tuple(header),
        lines_after_header=_count_lines(data, start) - header_line,
        body=body,
        positions=positions,
        continued=continued_lines(body) if data.find(b'"', header_end) >= 0 else None,  # one search, most files
    )


def read_records(data: bytes, source_file: str) -> ApplicationRecords:
    """The records of a landed file's bytes, all at once; raises ApplicationFileError for a file that is not one."""
    file = open_file(data, source_file)
    read = file.chunk(0, len(file.body))
    return ApplicationRecords(
        records=read.records,
        header_line=file.header_line,
        columns=file.columns,
        lines_after_header=file.lines_after_header,
        blank_lines=read.blank_lines,
    )


@dataclass(frozen=True)
class Lines:
    """Lines of a file's bytes: where each starts and how long its text is (without its LF, CRLF or CR)."""

    data: np.ndarray  # the file's bytes (for a file not all UTF-8: its text, each invalid byte escaped)
    starts: np.ndarray
    lengths: np.ndarray
    undecodable: np.ndarray | None = None  # per line: were its bytes not UTF-8? (None: every line is UTF-8)

    def __len__(self) -> int:
        return len(self.starts)

    def text(self, index: int) -> str:
        start = int(self.starts[index])
        return self.data[start : start + int(self.lengths[index])].tobytes().decode()

    def views(self, start: int, stop: int) -> pa.StringViewArray:
        """Lines [start, stop) as string views over the file's bytes: nothing is copied, and no query has
        to cut the terminators off."""
        return _string_views(self.data, self.starts[start:stop], self.lengths[start:stop])

    def after(self, index: int) -> Lines:
        undecodable = None if self.undecodable is None else self.undecodable[index + 1 :]
        return Lines(self.data, self.starts[index + 1 :], self.lengths[index + 1 :], undecodable)


def continued_lines(lines: Lines) -> np.ndarray | None:
    """Per line: does a quoted field opened on a line before it run on to it (RFC 4180)? Every line from
    the one after the opening line to the one that closes the field, if that is one of the next
    MAX_CONTINUED_LINES; None when no line is. The opening line is malformed already (its quote does not
    close on it), and the lines it takes are malformed too, so no fragment of a field is ever taken for an
    application of its own."""
    with_quotes = _lines_with(lines, ord('"'))  # few in most files: only they can open a quoted field
    with duck.connect() as connection:
        connection.execute(_CSV_FIELDS)
        [opens] = _line_flags(connection, lines, with_quotes, ["opens_quoted_field"])
        openers = with_quotes[opens]
        if not len(openers):
            return None
        window = np.unique((openers[:, None] + np.arange(1, MAX_CONTINUED_LINES + 1)).ravel())
        window = window[window < len(lines)]
        stays, closes, reopens = (
            set(window[flags].tolist())
            for flags in _line_flags(
                connection, lines, window, ["stays_in_quoted_field", "closes_quoted_field", "reopens_quoted_field"]
            )
        )
    closing = closes | reopens
    continued = np.zeros(len(lines), dtype=np.bool_)
    taken_to = -1  # the last line a field took
    for first_opener in openers.tolist():
        opener = first_opener if first_opener > taken_to else None  # None: a line a field took already
        while opener is not None:
            last = min(opener + MAX_CONTINUED_LINES, len(lines) - 1)
            following = opener + 1
            while following <= last and following in stays:
                following += 1
            if following > last or following not in closing:
                break  # not closed on the next lines: a broken quote of its own line
            continued[opener + 1 : following + 1] = True
            taken_to = following
            opener = following if following in reopens else None  # the closing line may open another field
    return continued if continued.any() else None


def _lines_with(lines: Lines, byte: int) -> np.ndarray:
    """The indices of the lines that may hold `byte`: exactly those when the byte is rare, else all of them
    (mapping millions of positions to lines would cost more than checking every line). Searched a slice of
    the bytes at a time, so the comparison's temporary stays small."""
    if not len(lines):
        return np.zeros(0, np.int64)
    start, end = int(lines.starts[0]), int(lines.starts[-1] + lines.lengths[-1])
    slices = range(start, end, _NEWLINE_SEARCH_BYTES)
    found = sum(int(np.count_nonzero(lines.data[offset : offset + _NEWLINE_SEARCH_BYTES] == byte)) for offset in slices)
    if found > len(lines) // 8:
        return np.arange(len(lines))
    positions = np.concatenate(
        [np.zeros(0, np.int64)]
        + [np.flatnonzero(lines.data[offset : offset + _NEWLINE_SEARCH_BYTES] == byte) + offset for offset in slices]
    )
    positions = positions[positions < end]
    return np.unique(np.searchsorted(lines.starts, positions, side="right") - 1)


def _line_flags(
    connection: duckdb.DuckDBPyConnection, lines: Lines, indices: np.ndarray, macros: list[str]
) -> list[np.ndarray]:
    """Each boolean macro of csv_fields.sql, for each of `lines` at `indices`."""
    connection.register(
        "candidate_lines", pa.table({"line": _string_views(lines.data, lines.starts[indices], lines.lengths[indices])})
    )
    table = connection.sql(
        f"SELECT {', '.join(f'{macro}(line)' for macro in macros)} FROM candidate_lines"
    ).to_arrow_table()
    return [column.to_numpy() for column in table.columns]


def _split_lines(data: bytes, start: int) -> Lines:
    """Every line of `data[start:]`: each ends at an LF, or at a CR that no LF follows."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    # a slice at a time: the comparison's temporary stays small (for a whole file, its fresh pages cost
    # three times the search, in a new process)
    newlines = np.concatenate(
        [np.zeros(0, np.int64)]
        + [
            np.flatnonzero(buffer[offset : offset + _NEWLINE_SEARCH_BYTES] == ord("\n")) + offset
            for offset in range(start, len(buffer), _NEWLINE_SEARCH_BYTES)
        ]
    )
    # a CR before the LF is part of the terminator (the byte before an empty line's LF is never a CR)
    crlf = buffer[np.maximum(newlines - 1, 0)] == ord("\r")
    if data.find(b"\r", start) >= 0 and _count_byte(buffer, start, ord("\r")) > np.count_nonzero(crlf):
        # rare: a line ending with a CR alone is a line of its own, not merged into the next one
        returns = np.flatnonzero(buffer[start:] == ord("\r")) + start
        following = buffer[np.minimum(returns + 1, len(buffer) - 1)]
        newlines = np.sort(np.concatenate([newlines, returns[(following != ord("\n")) | (returns == len(buffer) - 1)]]))
        crlf = (buffer[np.maximum(newlines - 1, 0)] == ord("\r")) & (buffer[newlines] == ord("\n"))
    # Few arrays, filled in place: each new one is a million fresh pages' worth of faults per million lines.
    unterminated = len(data) > (newlines[-1] + 1 if len(newlines) else start)  # text after the last terminator
    starts = np.empty(len(newlines) + unterminated, np.int64)
    starts[0:1] = start
    np.add(newlines[: len(starts) - 1], 1, out=starts[1:])
    lengths = np.empty_like(starts)
    np.subtract(newlines, starts[: len(newlines)], out=lengths[: len(newlines)])
    if unterminated:
        lengths[-1] = len(data) - starts[-1]
    lengths[: len(newlines)] -= crlf
    return Lines(buffer, starts, lengths)


# Arrow's string_view: 16 bytes per value (the length, then up to 12 bytes of the value itself, or its first 4
# bytes, the data buffer it is in and its offset there). Each buffer starts 2 GiB after the one before (all of
# them views of the same bytes), so offsets fit in 32 bits in a file of any size.
_VIEW_INLINE_BYTES = 12
_VIEW_BUFFER_SHIFT = 31


def _string_views(buffer: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> pa.StringViewArray:
    words = np.empty((len(starts), 4), dtype=np.int32)  # the views, 4 words each
    words[:, 0] = lengths
    last = max(len(buffer) - 1, 0)  # a gather past the end (a short last line) reads a byte that is never used
    words[:, 1] = buffer[np.minimum(starts[:, None] + np.arange(4), last)].view(np.int32)[:, 0]
    words[:, 2] = starts >> _VIEW_BUFFER_SHIFT
    words[:, 3] = starts & ((1 << _VIEW_BUFFER_SHIFT) - 1)
    inline = np.flatnonzero(lengths <= _VIEW_INLINE_BYTES)  # few: blank and very short lines
    if len(inline):
        inline_bytes = buffer[np.minimum(starts[inline][:, None] + np.arange(_VIEW_INLINE_BYTES), last)]
        inline_bytes[np.arange(_VIEW_INLINE_BYTES) >= lengths[inline][:, None]] = 0
        words[inline, 1:] = inline_bytes.view(np.int32)
    data = pa.py_buffer(buffer)
    buffers = [data.slice(index << _VIEW_BUFFER_SHIFT) for index in range((len(buffer) >> _VIEW_BUFFER_SHIFT) + 1)]
    return pa.Array.from_buffers(pa.string_view(), len(starts), [None, pa.py_buffer(words), *buffers])


def _count_byte(buffer: np.ndarray, start: int, byte: int) -> int:
    """How many of `buffer[start:]` are `byte`, a slice at a time (a small temporary)."""
    return sum(
        int(np.count_nonzero(buffer[offset : offset + _NEWLINE_SEARCH_BYTES] == byte))
        for offset in range(start, len(buffer), _NEWLINE_SEARCH_BYTES)
    )


def _count_terminators(data: bytes, start: int, end: int | None = None) -> int:
    """Line ends in `data[start:end]`, counted with nothing but the bytes: LFs, plus CRs no LF follows
    (searched for only in a file with a CR: one search in nearly every file)."""
    end = len(data) if end is None else end
    newlines = data.count(b"\n", start, end)
    if data.find(b"\r", start, end) < 0:
        return newlines
    window = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), 1, [None, pa.py_buffer(np.array([start, end], dtype=np.int64)), pa.py_buffer(data)]
    )
    # RE2 tells at memory speed that there is none (a CRLF file); counting them is the rare case
    if not pc.match_substring_regex(window, "\r[^\n]|\r$")[0].as_py():
        return newlines
    return newlines + len(_LONE_CR.findall(data, start, end))


def _count_lines(data: bytes, start: int) -> int:
    """Lines in the file, counted with nothing but the bytes: line ends, plus an unterminated last line."""
    return _count_terminators(data, start) + (len(data) > start and not data.endswith((b"\n", b"\r")))


def _first_invalid_utf8(data: bytes, start: int) -> int | None:
    """The offset of the first byte of `data[start:]` that is not UTF-8 (None for a UTF-8 file, the common
    case, checked at memory speed)."""
    text = pa.LargeStringArray.from_buffers(
        1, pa.py_buffer(np.array([start, len(data)], dtype=np.int64)), pa.py_buffer(data)
    )
    try:
        text.validate(full=True)  # checks that the whole file is valid UTF-8
        return None
    except pa.ArrowInvalid:
        pass
    try:
        data.decode("utf-8")  # from the start: a BOM is UTF-8 too
    except UnicodeDecodeError as error:
        return error.start
    return None


def _escaped_lines(data: bytes, start: int, lines: Lines) -> Lines:
    """`lines` of a file that is not all UTF-8, over its text with every invalid byte shown as `\\xNN`,
    each line flagged `undecodable` when it held one. An escape only ever lengthens its own line (a line
    break is never part of an invalid sequence), so the lines are the same ones, split again, and a line
    is undecodable exactly when its escaped text is longer."""
    escaped = _split_lines(data.decode("utf-8", "backslashreplace").encode(), start)
    if len(escaped) != len(lines):
        raise RuntimeError("escaping the bytes that are not UTF-8 changed the number of lines")
    return Lines(escaped.data, escaped.starts, escaped.lengths, escaped.lengths != lines.lengths)


def _read_header(source_file: str, connection: duckdb.DuckDBPyConnection, text: str, header_line: int) -> list[str]:
    if "\x00" in text:
        raise ApplicationFileError(source_file, "not_csv", f"line {header_line} (the header) contains NUL bytes")
    [(fields,)] = connection.execute("SELECT csv_fields($line)", {"line": text}).fetchall()
    if fields is None:
        raise ApplicationFileError(
            source_file, "not_csv", f"line {header_line} (the header): a quoted column name is not closed properly"
        )
    return [field.strip() for field in fields]


def _required_positions(source_file: str, header: list[str], header_line: int) -> dict[str, int]:
    """The 1-based position of each required column (names match in any case, spaces around ignored)."""
    canonical = [name.lower() for name in header]
    missing = [column for column in INPUT_COLUMNS if column not in canonical]
    if missing:
        raise ApplicationFileError(
            source_file,
            "missing_columns",
            f"line {header_line} (the header, {len(header)} column(s)) lacks the required column(s) "
            f"{', '.join(missing)}; required: {', '.join(INPUT_COLUMNS)}"
            + ("; the separator must be a comma" if len(header) == 1 and _OTHER_SEPARATORS.search(header[0]) else ""),
        )
    repeated = [column for column in INPUT_COLUMNS if canonical.count(column) > 1]
    if repeated:
        raise ApplicationFileError(
            source_file,
            "duplicate_columns",
            f"line {header_line} (the header) names the column(s) {', '.join(repeated)} more than once",
        )
    return {column: canonical.index(column) + 1 for column in INPUT_COLUMNS}
