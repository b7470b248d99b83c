"""Per-client API keys for the upload API. Only SHA-256 hashes of keys are ever stored. No Dagster.

A key line is `<client>:<sha256 hex of the key>`; lines come from MEMBERFLOW_API_KEYS (separated by
newlines, commas or spaces) and from the file MEMBERFLOW_API_KEYS_FILE names (one per line, `#`
comments). `memberflow api-key --client NAME` mints a key, prints it once and appends its line.

Keys are 256-bit random tokens, so a plain SHA-256 is the right hash: slow password hashes (bcrypt,
scrypt) exist to protect low-entropy secrets and would cost milliseconds on every request here.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import threading
from pathlib import Path

log = logging.getLogger(__name__)

KEY_PREFIX = "mfk_"
_CLIENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_HASH = re.compile(r"^[0-9a-f]{64}$")


class KeyFileError(ValueError):
    pass


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def mint_key(client: str) -> tuple[str, str]:
    """A new random key for `client` and the line to store for it (`client:hash`)."""
    if not _CLIENT.match(client):
        raise KeyFileError(f"client name {client!r}: use 1-64 letters, digits, '_', '.', '@', '-'")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, f"{client}:{hash_key(key)}"


def parse_key_lines(text: str, origin: str) -> tuple[dict[str, str], list[str]]:
    """{key hash: client} from the valid `client:hash` entries, and one problem per malformed entry."""
    hashes: dict[str, str] = {}
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        for entry in re.split(r"[,\s]+", line.split("#", 1)[0].strip()):
            if not entry:
                continue
            client, _, key_hash = entry.partition(":")
            key_hash = key_hash.lower()
            if _CLIENT.match(client) and _HASH.match(key_hash):
                hashes[key_hash] = client
            else:
                problems.append(f"{origin} line {number}: expected '<client>:<64 hex sha256>', got {entry[:20]!r}...")
    return hashes, problems


class ApiKeys:
    """Resolves a presented key to its client. The file is re-read when it changes (no restart needed).

    Fails closed: only the entries the file holds *now* are valid. A malformed entry is skipped (and
    logged), never a reason to keep the previous keys, so deleting a line revokes its key whatever else
    the edit broke; an unreadable file validates no key. Only at start is a malformed file refused
    outright, so a typo is caught when someone is watching.
    """

    def __init__(self, inline: str, path: Path | None):
        self._inline = _strict(*parse_key_lines(inline, "MEMBERFLOW_API_KEYS"))
        self._path = path
        self._file_state: object = None  # what the file looked like when it was last read
        self._from_file: dict[str, str] = {}
        self._lock = threading.Lock()
        self._refresh(strict=True)

    def _stat(self) -> object:
        """Changes whenever the file may have: also a replacement with the same size and mtime (new inode, ctime)."""
        try:
            status = os.stat(self._path)
        except FileNotFoundError:
            return "missing"
        except OSError as error:
            return f"unreadable: {error}"
        return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)

    def _refresh(self, strict: bool = False) -> None:
        if self._path is None or self._stat() == self._file_state:
            return
        with self._lock:
            state = self._stat()
            if state == self._file_state:
                return
            try:
                text = "" if state == "missing" else self._path.read_text(encoding="utf-8")
            except (OSError, UnicodeError) as error:
                hashes, problems = {}, [f"{self._path} cannot be read: {error}"]
            else:
                hashes, problems = parse_key_lines(text, str(self._path))
            if strict:
                _strict(hashes, problems)  # refuse to start with a broken keys file
            for problem in problems:
                log.error("API keys file: %s; that entry validates no key", problem)
            self._from_file = hashes
            self._file_state = state

    @property
    def count(self) -> int:
        self._refresh()
        return len(self._inline) + len(self._from_file)

    def client_for(self, key: str | None) -> str | None:
        """The client a key belongs to, or None for a missing or unknown key."""
        if not key:
            return None
        self._refresh()
        presented = hash_key(key)
        return self._inline.get(presented) or self._from_file.get(presented)


def _strict(hashes: dict[str, str], problems: list[str]) -> dict[str, str]:
    if problems:
        raise KeyFileError(problems[0])
    return hashes


def append_key_line(path: Path, line: str) -> None:
    """Add a key line to the keys file, creating it readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(descriptor, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
