"""The membership storage layout: where application files land, are quarantined and written, which landed
files are application batches, and the batch (partition) key of each. No Dagster."""

from __future__ import annotations

import hashlib
import re

LANDING_PREFIX = "landing/applications"
QUARANTINE_PREFIX = "quarantine/applications"
SUCCESSFUL_PREFIX = "members/successful"
UNSUCCESSFUL_PREFIX = "members/unsuccessful"

# Run tag naming the landed file a run is for (set by the landing sensor).
SOURCE_FILE_TAG = "memberflow/source_file"

# Names upstream tools use while a file is still being written; such files are never picked up.
# (\Z, not $: `$` also matches before a final newline, and a name may end with one)
_IN_PROGRESS = re.compile(r"(\A[.~])|(\.(tmp|part|partial|crdownload|swp|filepart|inprogress)\Z)", re.I)
_PLAIN_STEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,150}")
_HASH_SEPARATOR = "~"  # never part of a plain key
REASON_SUFFIX = ".reason.txt"
_MAX_NAME_BYTES = 255  # the longest file name local file systems (ext4, XFS, ...) allow


def is_batch_file(name: str) -> bool:
    """Every finished file counts, not only `*.csv`: a wrongly named file is quarantined with a
    reason rather than ignored, so nothing dropped into the landing zone goes unnoticed."""
    return bool(name) and not _IN_PROGRESS.search(name)


def batch_key(name: str) -> str:
    """The partition key of a landed file; distinct names always get distinct keys.

    A file named `<stem>.csv` (the extension in lower case) whose stem is plain (letters, digits and
    `_.-`, at most 151 characters, no `..`) has the key `<stem>`. Any other name gets a readable part
    and 16 hex digits of the SHA-256 of the whole name, joined by `~`, a character no plain key has:
    `dup_a.CSV~1f0c...`, `week_2_final.csv~9b2e...`. So a plain key names one file, and two other
    names share a key only if 64 bits of SHA-256 collide.
    """
    stem = name.removesuffix(".csv")
    if stem != name and _PLAIN_STEM.fullmatch(stem) and ".." not in stem:
        return stem
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).replace("..", "_").strip("._-")[:100] or "file"
    return f"{readable}{_HASH_SEPARATOR}{hashlib.sha256(name.encode()).hexdigest()[:16]}"


def plain_file_name(key: str) -> str | None:
    """The one file name a plain key stands for (`<key>.csv`); None for a hashed key."""
    return None if _HASH_SEPARATOR in key else f"{key}.csv"


def quarantine_name(name: str) -> str:
    """The name a landed file is quarantined under, beside `<it>.reason.txt`: its own, unless the reason
    file's name would be longer than a local file system allows, or the name is that of another file's
    reason file (`x.reason.txt`); then `~<its batch key>`, as unique, and a name no file that is picked
    up has (`is_batch_file`), so no two files' quarantined copies or reasons ever share a name."""
    if len((name + REASON_SUFFIX).encode()) <= _MAX_NAME_BYTES and not name.endswith(REASON_SUFFIX):
        return name
    return f"~{batch_key(name)}"
