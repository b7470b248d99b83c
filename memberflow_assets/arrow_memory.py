"""Which allocator Arrow uses in memberflow's processes. No Dagster.

pyarrow's default pool, mimalloc, hands freed memory back to the operating system within milliseconds,
so work that allocates and frees hundreds of megabytes again and again (a membership file's chunks)
faults every page back in and has the kernel zero it: a third of the CPU of a 1M-row partition in a
fresh process (bench/membership.py; docs/membership.md "Speed"). jemalloc keeps freed memory for reuse.
An operator's own choice (ARROW_DEFAULT_MEMORY_POOL) is left alone.
"""

from __future__ import annotations

import os

import pyarrow as pa


def use_retaining_pool() -> str:
    """Make jemalloc (or the system allocator, where pyarrow has no jemalloc) Arrow's default pool,
    unless ARROW_DEFAULT_MEMORY_POOL chooses one; returns the backend in use."""
    if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        try:
            pool = pa.jemalloc_memory_pool()
        except NotImplementedError:  # a pyarrow built without jemalloc (e.g. on Windows)
            pool = pa.system_memory_pool()
        pa.set_memory_pool(pool)
    return pa.default_memory_pool().backend_name
