"""Which landed files are application batches, and the batch (partition) key of each. No Dagster."""

from __future__ import annotations

import hashlib
import re

LANDING_PREFIX = "landing/applications"
QUARANTINE_PREFIX = "quarantine/applications"
SUCCESSFUL_PREFIX = "members/successful"
UNSUCCESSFUL_PREFIX = "members/unsuccessful"

# Names upstream tools use while a file is still being written; such files are never picked up.
_IN_PROGRESS = re.compile(r"(^[.~])|(\.(tmp|part|partial|crdownload|swp|filepart|inprogress)$)", re.I)
_SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,150}$")


def is_batch_file(name: str) -> bool:
    """Every finished file counts, not only `*.csv`: a wrongly named file is quarantined with a
    reason rather than ignored, so nothing dropped into the landing zone goes unnoticed."""
    return bool(name) and not _IN_PROGRESS.search(name)


def batch_key(name: str) -> str:
    """The partition key of a landed file: its name without `.csv` when that is a safe key;
    otherwise a sanitised name plus a short hash of the real name, so keys stay unique."""
    stem = name[:-4] if name.lower().endswith(".csv") else name
    if _SAFE_KEY.match(stem) and ".." not in stem:
        return stem
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).replace("..", "_").strip("._-")[:100] or "file"
    return f"{safe}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
