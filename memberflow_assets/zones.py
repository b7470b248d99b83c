"""The data zones (landing, quarantine, members, images, ...) on a local folder or in S3, one code path.

Every zone path is relative to one root: `MEMBERFLOW_DATA_DIR` locally, or `MEMBERFLOW_STORAGE_URL`
(`s3://bucket/prefix`). fsspec gives both the same API; the two places where local and S3 differ
on purpose are atomic writes (temp file + rename locally, a single PUT on S3) and which timestamp
marks a file as new (see `FileInfo.changed_at`).

Locally, a file is written under a temporary name in `<top folder>/.tmp/` (e.g. `landing/.tmp/` for
anything under `landing/`) and renamed into place, so each top-level zone folder must be one
filesystem. A writer killed before its rename leaves its temporary file there, never beside the data:
`sweep_temporaries` finds such leftovers by listing those few folders, whatever the zones hold.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import posixpath
import tempfile
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import duckdb
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from memberflow_assets.settings import Settings


def _make_folders(folder: str) -> list[str]:
    """Create `folder` and its missing parents; returns the folders whose entries that changed (the new
    folders' parents), which a durable write must fsync too: else a power failure can lose a new folder
    (a new hour's) with every file put in it. A folder another writer creates meanwhile is counted by both."""
    missing = []
    while not os.path.isdir(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    if missing:
        os.makedirs(missing[0], exist_ok=True)
    return [os.path.dirname(created) for created in missing]


def _libc_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    function = getattr(ctypes.CDLL(None, use_errno=True), "sync_file_range", None)  # Linux only
    if function is not None:
        function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return function


_sync_file_range = _libc_sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2  # start writing the dirty pages out, do not wait


def _write_new_file(path: str, data: bytes, start_writeback: bool = False) -> list[str]:
    """Create `path` with `data`, creating its folder only when missing (one syscall saved per file);
    returns the folders to fsync for the new ones (`_make_folders`). With `start_writeback` the disk
    write starts at once (Linux sync_file_range), so a later fsync mostly finds it done."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    changed: list[str] = []
    try:
        descriptor = os.open(path, flags)
    except FileNotFoundError:
        changed = _make_folders(os.path.dirname(path))
        descriptor = os.open(path, flags)
    try:
        with memoryview(data) as view:
            written = 0
            while written < len(view):
                written += os.write(descriptor, view[written:])
        if start_writeback and _sync_file_range is not None:
            _sync_file_range(descriptor, 0, 0, _SYNC_FILE_RANGE_WRITE)
    finally:
        os.close(descriptor)
    return changed


TEMPORARY_DIR = ".tmp"
NOT_UTF8_NAME = "file whose name is not UTF-8"
# s3fs reads `?versionId=` in a key as the version of the key before it: such an object cannot be read
S3_VERSION_NAME = "object whose key holds ?versionId="
# A temporary file keeps this many bytes of its final name (a name of up to 255 bytes still fits beside the suffix).
_TEMPORARY_NAME_BYTES = 100
# A temporary file older than this belongs to no write in progress (a write renames its files within
# seconds): `sweep_temporaries` may delete it.
TEMPORARY_SAFE_AGE = 15 * 60


def _rename_into_place(temp: str, final: str) -> list[str]:
    """Rename `temp` to `final`, creating its folder when missing; returns the folders to fsync for the
    new ones (`_make_folders`)."""
    try:
        os.replace(temp, final)
        return []
    except FileNotFoundError:
        if not os.path.exists(temp):
            raise
    changed = _make_folders(os.path.dirname(final))  # the first file of a new folder
    os.replace(temp, final)
    return changed


def fsync_path(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_paths(paths: Sequence[str]) -> None:
    """fsync many files (and folders) on this thread. Each file's writeback was started when it was
    written (`_write_new_file`), so the data of all is written at once and, on a journaled filesystem,
    their block allocations join the running transaction: the first fsync's journal commit covers them
    all and the others only wait for their data. (Without a journal, each fsync is a cache flush of its
    own.) fsyncs from a pool of threads shared the commits too, at about twice the CPU: the hand-offs
    to and from the threads (docs/images_ingestion.md, "Upload API against its ceilings")."""
    descriptors: list[int] = []
    try:
        for path in paths:
            descriptors.append(os.open(path, os.O_RDONLY))
        for descriptor in descriptors:
            os.fsync(descriptor)
    finally:
        for descriptor in descriptors:
            os.close(descriptor)


@dataclass(frozen=True)
class Staged:
    """Files written whole under temporary names (in `.tmp/` folders), not in place yet:
    `Zones.publish` renames them into place in this order, `Zones.discard` removes them."""

    files: tuple[tuple[str, str], ...]  # (temporary path, final path)
    unsynced: tuple[str, ...] = ()  # files and folders `publish` must fsync before the first rename


def _remove_temporaries(files: Sequence[tuple[str, str]]) -> None:
    for temp, _ in files:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temp)


@dataclass(frozen=True)
class FileInfo:
    relpath: str  # relative to the zones root, '/'-separated
    size: int
    changed_at: float  # epoch seconds: when the file appeared or last changed at this path

    @property
    def name(self) -> str:
        return posixpath.basename(self.relpath)


class Zones:
    def __init__(self, root_url: str, s3_endpoint_url: str | None = None):
        self.root_url = root_url.rstrip("/")
        self.is_s3 = self.root_url.startswith("s3://")
        self.s3_endpoint_url = s3_endpoint_url
        if self.is_s3:
            # Listings must be fresh on every sensor tick, so s3fs's listing cache is off.
            self.fs = fsspec.filesystem(
                "s3", endpoint_url=s3_endpoint_url, use_listings_cache=False, skip_instance_cache=True
            )
            self.root = self.root_url.removeprefix("s3://")
        else:
            self.fs = fsspec.filesystem("file")
            self.root = os.path.abspath(self.root_url)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Zones:
        settings = settings or Settings.from_env()
        return cls(settings.zones_url, settings.s3_endpoint_url)

    # -- paths -----------------------------------------------------------------------------------
    def path(self, relpath: str) -> str:
        """The filesystem path (no protocol) of a zone-relative path."""
        return posixpath.join(self.root, relpath.lstrip("/"))

    def url(self, relpath: str) -> str:
        """The full address a user can open: `s3://...` or an absolute local path."""
        return f"s3://{self.path(relpath)}" if self.is_s3 else self.path(relpath)

    def relative(self, path: str) -> str:
        return posixpath.relpath(path.removeprefix("s3://"), self.root)

    # -- reading ---------------------------------------------------------------------------------
    def list_files(self, prefix: str, recursive: bool = False) -> list[FileInfo]:
        """Files directly under (or, recursively, below) a zone folder; [] when it does not exist."""
        if recursive:
            try:
                entries = self.fs.find(self.path(prefix), detail=True).values()
            except FileNotFoundError:
                return []
            return [self._file_info(entry) for entry in entries if entry.get("type") == "file"]
        return self.list_entries(prefix)[0]

    def list_entries(self, prefix: str) -> tuple[list[FileInfo], dict[str, str]]:
        """What is directly under a zone folder: its regular files, and every other entry's relative path
        with what it is (`folder`, `symbolic link` — never followed —, `special file`, NOT_UTF8_NAME: an
        entry whose local name is not UTF-8, shown with its bytes escaped, e.g. `bad\\xff.csv`, or
        S3_VERSION_NAME). An S3 "folder" marker (the empty object `<prefix>/` consoles create) is no entry."""
        listed = self.path(prefix).rstrip("/")
        try:
            entries = self.fs.ls(listed, detail=True)
        except FileNotFoundError:
            return [], {}
        files, others = [], {}
        for entry in entries:
            if self.is_s3 and entry["name"].rstrip("/") == listed:
                continue
            if not _is_utf8(entry["name"]):  # a local name of other bytes: no tag, log or database can hold it
                others[_printable(self.relative(entry["name"]))] = NOT_UTF8_NAME
            elif self.is_s3 and "?versionId=" in entry["name"]:
                others[self.relative(entry["name"])] = S3_VERSION_NAME
            elif entry.get("islink"):
                others[self.relative(entry["name"])] = "symbolic link"
            elif entry.get("type") == "file":
                files.append(self._file_info(entry))
            else:
                others[self.relative(entry["name"])] = "folder" if entry.get("type") == "directory" else "special file"
        return files, others

    def _file_info(self, entry: dict) -> FileInfo:
        return FileInfo(self.relative(entry["name"]), int(entry["size"]), self._changed_at(entry))

    def list_dirs(self, prefix: str) -> list[str]:
        """Relative paths of the folders directly under a zone folder; [] when it does not exist."""
        return sorted(relpath for relpath, kind in self.list_entries(prefix)[1].items() if kind == "folder")

    def _changed_at(self, entry: dict) -> float:
        if self.is_s3:
            modified = entry["LastModified"]
            return modified.timestamp() if isinstance(modified, datetime) else float(modified)
        # A rename keeps a file's mtime but updates its ctime: upstream that moves an old file into
        # the landing zone must still count as new.
        return max(float(entry["mtime"]), float(entry.get("created") or 0))

    def file_info(self, relpath: str) -> FileInfo | None:
        """The file at `relpath`, or None when there is none."""
        try:
            entry = self.fs.info(self.path(relpath))
        except FileNotFoundError:
            return None
        return FileInfo(relpath, int(entry["size"]), self._changed_at(entry)) if entry.get("type") == "file" else None

    def require_root(self) -> None:
        """Raises when the zones' root is not there (an S3 bucket that does not exist, a local folder
        missing): a command that deletes or rebuilds from the zones must not take a wrong setting for an
        empty store."""
        if self.is_s3:
            bucket = self.root.split("/", 1)[0]
            if not self.fs.exists(bucket):
                raise FileNotFoundError(f"the S3 bucket {bucket!r} of the zones does not exist (or is not visible)")
        elif not os.path.isdir(self.root):
            raise FileNotFoundError(f"the zones' folder {self.root} does not exist")

    def exists(self, relpath: str) -> bool:
        return self.fs.exists(self.path(relpath))

    def read_bytes(self, relpath: str) -> bytes:
        return self.fs.cat_file(self.path(relpath))

    @contextmanager
    def local_file(self, relpath: str) -> Iterator[str]:
        """A local path holding the file's bytes: the file itself locally, a temporary download on S3."""
        if not self.is_s3:
            yield self.path(relpath)
            return
        with tempfile.TemporaryDirectory(prefix="memberflow-") as folder:
            local = os.path.join(folder, posixpath.basename(relpath))
            self.fs.get_file(self.path(relpath), local)
            yield local

    def read_parquet(self, relpath: str, columns: Sequence[str] | None = None) -> pa.Table:
        with self.fs.open(self.path(relpath), "rb") as handle:
            return pq.read_table(handle, columns=columns)

    def parquet_footer(self, relpath: str) -> pq.FileMetaData:
        """A Parquet file's footer (row count, key-value metadata, ...), without reading the data."""
        with self.fs.open(self.path(relpath), "rb") as handle:
            return pq.ParquetFile(handle).metadata

    def parquet_num_rows(self, relpath: str) -> int:
        return self.parquet_footer(relpath).num_rows

    # -- writing ---------------------------------------------------------------------------------
    @contextmanager
    def writing(self, relpath: str) -> Iterator[str]:
        """A temporary local path to write a file to; when the block succeeds the file appears at
        `relpath` whole, in one step (a rename locally, one upload on S3), and otherwise not at all."""
        if self.is_s3:
            with tempfile.TemporaryDirectory(prefix="memberflow-") as folder:
                temp = os.path.join(folder, posixpath.basename(relpath))
                yield temp
                self.fs.put_file(temp, self.path(relpath))
            return
        final = self.path(relpath)
        temp = self._temporary_path(relpath)
        os.makedirs(os.path.dirname(temp), exist_ok=True)
        try:
            yield temp
            _rename_into_place(temp, final)
        finally:
            if os.path.exists(temp):
                os.remove(temp)

    def write_bytes(self, relpath: str, data: bytes, fsync: bool = False) -> None:
        """Write a whole object so readers see either nothing or all of it (`fsync`: see write_all)."""
        self.write_all([(relpath, data)], fsync=fsync)

    def write_all(self, files: Sequence[tuple[str, bytes]], fsync: bool = False) -> None:
        """Write whole files so readers see each either not at all or complete, and never one before
        the files listed before it (so a marker file listed last appears last).

        Locally every file is first written under a temporary name and the renames come last, in
        order; with `fsync` all data is on disk before the first rename and the renames are on disk
        before returning, so not even a power failure leaves a partial file under a final name. One
        durability barrier for many files costs far less than one per file. On S3 each file is one
        PUT, in order; a PUT is complete and durable when it returns.
        """
        if self.is_s3:
            for relpath, data in files:
                self.fs.pipe_file(self.path(relpath), data)
            return
        self.publish([self.stage(files, fsync=fsync)], fsync=fsync)

    def stage(self, files: Sequence[tuple[str, bytes]], fsync: bool = False) -> Staged:
        """The first half of `write_all`, locally: the files written under temporary names (with `fsync`
        on disk, fsynced together), for `publish` to put in place later, or `discard`."""
        [staged] = self.stage_many([files], fsync=fsync)
        return staged

    def stage_many(
        self, groups: Sequence[Sequence[tuple[str, bytes]]], fsync: bool = False, rebuildable: Collection[str] = ()
    ) -> list[Staged]:
        """`stage` for several groups of files at once (a batch of images, each with its sidecar), one
        `Staged` per group. On failure none is left. With `fsync` each file's disk write is started as it
        is written, and `publish` waits for them all before the first rename: what the caller does in
        between (a registry claim) overlaps the disk's work. Files in `rebuildable` (relpaths) are not
        fsynced: the caller can rebuild them after a power failure leaves them empty or truncated (their
        names are made durable by `publish` all the same)."""
        if self.is_s3:
            raise ValueError("staging is for local zones: on S3 a file is written by one PUT")
        unsynced_finals = {self.path(relpath) for relpath in rebuildable} if fsync else set()
        staged: list[list[tuple[str, str]]] = []
        to_sync: list[list[str]] = []
        try:
            for files in groups:
                staged.append([])
                to_sync.append([])
                for relpath, data in files:
                    temp, final = self._temporary_path(relpath), self.path(relpath)
                    staged[-1].append((temp, final))  # before writing: a failed write's file goes too
                    durable = fsync and final not in unsynced_finals
                    folders = _write_new_file(temp, data, start_writeback=durable)
                    to_sync[-1] += ([temp] if durable else []) + folders
        except BaseException:
            _remove_temporaries([pair for group in staged for pair in group])
            raise
        return [Staged(tuple(group), tuple(paths)) for group, paths in zip(staged, to_sync, strict=True)]

    def publish(self, staged: Sequence[Staged], fsync: bool = False) -> None:
        """Rename staged files into place, each `Staged` in its order; with `fsync` their data is on disk
        before the first rename (fsynced together) and the renames are on disk before returning: one
        fsync per folder for all, and the parents of folders created for them. What a failure leaves
        unrenamed is removed."""
        files = [pair for each in staged for pair in each.files]
        if not files:
            return
        renamed = 0
        changed_folders = [os.path.dirname(final) for _, final in files]
        try:
            if fsync:
                _fsync_paths(list(dict.fromkeys(path for each in staged for path in each.unsynced)))
            for temp, final in files:
                changed_folders += _rename_into_place(temp, final)
                renamed += 1
            if fsync:
                _fsync_paths(list(dict.fromkeys(changed_folders)))
        finally:
            _remove_temporaries(files[renamed:])

    def discard(self, staged: Sequence[Staged]) -> None:
        """Remove staged files that will not be published."""
        _remove_temporaries([pair for each in staged for pair in each.files])

    def _temporary_path(self, relpath: str) -> str:
        top, _, rest = relpath.lstrip("/").partition("/")
        folder = os.path.join(self.root, top) if rest else self.root
        name = posixpath.basename(relpath).encode()[:_TEMPORARY_NAME_BYTES].decode(errors="ignore")
        return os.path.join(folder, TEMPORARY_DIR, f"{name}.{uuid.uuid4().hex}.tmp")

    def sweep_temporaries(self, older_than: float = TEMPORARY_SAFE_AGE) -> tuple[int, int]:
        """Delete the temporary files of writes that never finished (a killed process), if older than
        `older_than` seconds; returns (files, bytes). Lists only the `.tmp/` folders (none on S3)."""
        if self.is_s3:
            return 0, 0
        cutoff = time.time() - older_than
        try:
            folders = [self.root] + [entry.path for entry in os.scandir(self.root) if entry.is_dir()]
        except FileNotFoundError:
            return 0, 0
        files = size = 0
        for folder in folders:
            try:
                entries = list(os.scandir(os.path.join(folder, TEMPORARY_DIR)))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                with contextlib.suppress(FileNotFoundError):  # renamed or removed meanwhile
                    info = entry.stat(follow_symlinks=False)
                    if entry.is_file(follow_symlinks=False) and entry.name.endswith(".tmp") and info.st_mtime < cutoff:
                        os.unlink(entry.path)
                        files, size = files + 1, size + info.st_size
        return files, size

    def write_parquet(self, relpath: str, table: pa.Table) -> None:
        with self.writing_parquet(relpath, table.schema) as writer:
            writer.write_table(table)

    @contextmanager
    def writing_parquet(
        self,
        relpath: str,
        schema: pa.Schema,
        dictionary: bool | Sequence[str] = True,
        statistics: bool | Sequence[str] = True,
        encodings: dict[str, str] | None = None,
    ) -> Iterator[pq.ParquetWriter]:
        """A Parquet writer whose file appears at `relpath` whole when the block succeeds (`writing`):
        each `write_table` appends row groups, so a file can be written a part at a time. `dictionary`:
        the columns to dictionary-encode (all by default; for a column of mostly distinct values the
        encoder builds a dictionary only to give it up, which costs time and space). `statistics`: the
        columns whose minimum and maximum each row group records (all by default), which readers use to
        skip row groups. `encodings`: the encoding of some columns that are not dictionary-encoded (e.g.
        DELTA_BINARY_PACKED for ascending numbers)."""
        with (
            self.writing(relpath) as temp,
            pq.ParquetWriter(
                temp,
                schema,
                compression="zstd",
                use_dictionary=dictionary,
                write_statistics=statistics,
                column_encoding=encodings,
            ) as writer,
        ):
            yield writer

    def copy(self, src_relpath: str, dst_relpath: str) -> None:
        if self.is_s3:  # cp_file: `copy` takes `[`, `*`, `?` in a name for a pattern and copies what matches
            self.fs.cp_file(self.path(src_relpath), self.path(dst_relpath))
        else:
            self.write_bytes(dst_relpath, self.read_bytes(src_relpath))

    def delete(self, relpath: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path(relpath))

    def delete_tree(self, prefix: str) -> tuple[int, int]:
        """Delete a folder, or a single file, and everything below it; returns (files, bytes) deleted.

        Locally one pass of scandir + unlink (no separate listing); on S3 one listing, then batched
        DeleteObjects. Nothing to delete is (0, 0).
        """
        if not self.is_s3:
            return _delete_local_tree(self.path(prefix))
        entries = self._s3_files(prefix)
        if entries:
            self.fs.rm([entry["name"] for entry in entries])
        return len(entries), sum(int(entry["size"]) for entry in entries)

    def tree_size(self, prefix: str) -> tuple[int, int]:
        """(files, bytes) of a folder and everything below it, or of a single file; (0, 0) when missing."""
        if not self.is_s3:
            return _local_tree_size(self.path(prefix))
        entries = self._s3_files(prefix)
        return len(entries), sum(int(entry["size"]) for entry in entries)

    def _s3_files(self, prefix: str) -> list[dict]:
        try:
            entries = self.fs.find(self.path(prefix), detail=True).values()
        except FileNotFoundError:
            return []
        return [entry for entry in entries if entry.get("type") == "file"]

    def remove_empty_parents(self, relpath: str, stop_at: str) -> None:
        """Remove the now-empty folders above `relpath`, up to but not including `stop_at`.

        Local only: S3 has no folders to leave behind.
        """
        if self.is_s3:
            return
        stop = self.path(stop_at)
        folder = os.path.dirname(self.path(relpath))
        while folder.startswith(stop + "/"):
            try:
                os.rmdir(folder)
            except OSError:  # not empty (or already gone and a parent is not empty)
                if os.path.exists(folder):
                    return
            folder = os.path.dirname(folder)

    # -- DuckDB ----------------------------------------------------------------------------------
    def duckdb_connect(
        self, database: str = ":memory:", read_only: bool = False, config: dict | None = None
    ) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection that can read and write zone URLs (`zones.url(...)`) directly.

        DuckDB's own httpfs extension would be downloaded at run time, which this platform never
        does; on S3 it is given the same fsspec filesystem as everything else instead.
        """
        connection = duckdb.connect(database, read_only=read_only, config=config or {})
        if self.is_s3:
            connection.register_filesystem(self.fs)
        return connection


def _local_tree_size(path: str) -> tuple[int, int]:
    try:
        if not os.path.isdir(path) or os.path.islink(path):
            return 1, os.lstat(path).st_size
        entries = list(os.scandir(path))
    except FileNotFoundError:
        return 0, 0
    files = size = 0
    for entry in entries:
        with contextlib.suppress(FileNotFoundError):
            if entry.is_dir(follow_symlinks=False):
                sub_files, sub_size = _local_tree_size(entry.path)
                files, size = files + sub_files, size + sub_size
            else:
                size += entry.stat(follow_symlinks=False).st_size
                files += 1
    return files, size


def _delete_local_tree(path: str) -> tuple[int, int]:
    try:
        if not os.path.isdir(path) or os.path.islink(path):
            size = os.lstat(path).st_size
            os.unlink(path)
            return 1, size
        entries = list(os.scandir(path))
    except FileNotFoundError:
        return 0, 0
    files = size = 0
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            sub_files, sub_size = _delete_local_tree(entry.path)
            files, size = files + sub_files, size + sub_size
        else:
            with contextlib.suppress(FileNotFoundError):
                size += entry.stat(follow_symlinks=False).st_size
                os.unlink(entry.path)
                files += 1
    with contextlib.suppress(OSError):  # something landed meanwhile: keep the folder
        os.rmdir(path)
    return files, size


def _is_utf8(name: str) -> bool:
    """Whether a listed name is text (a local name that is not UTF-8 comes with surrogate escapes)."""
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True


def _printable(name: str) -> str:
    """A name that is not UTF-8 with its other bytes escaped (`bad\\xff.csv`)."""
    return name.encode(errors="surrogateescape").decode(errors="backslashreplace")
