"""Arrow's allocator in memberflow's processes: one that keeps freed memory (arrow_memory.py)."""

import os
import subprocess
import sys

import pytest

_BACKEND = "import memberflow_assets, pyarrow; print(pyarrow.default_memory_pool().backend_name)"


def _backend(**env: str) -> str:
    environment = {key: value for key, value in os.environ.items() if key != "ARROW_DEFAULT_MEMORY_POOL"}
    result = subprocess.run(
        [sys.executable, "-c", _BACKEND], env={**environment, **env}, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def test_importing_memberflow_replaces_mimalloc():
    assert _backend() in {"jemalloc", "system"}


@pytest.mark.parametrize("choice", ["mimalloc", "system"])
def test_an_operators_choice_is_kept(choice):
    assert _backend(ARROW_DEFAULT_MEMORY_POOL=choice) == choice
