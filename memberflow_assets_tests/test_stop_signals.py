"""The processes the tests start can be stopped, however the test process was started. Reproduced: run as a
background job (SIGINT ignored), the suite started `kafka-ingest` loops that ignored SIGTERM once any test
had run a job in process, so `terminate()` could not stop them."""

import os
import subprocess
import sys

# A test process started as a background job is (SIGINT ignored) runs a job in process and starts a child,
# before and after what conftest does.
TEST_PROCESS = """
import signal, subprocess, sys
import dagster as dg
from memberflow_assets_tests.helpers import restore_stop_signals

@dg.asset
def one() -> int:
    return 1

def child_after_a_job_in_process() -> str:
    assert dg.materialize([one]).success
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        status = open(f"/proc/{child.pid}/status").read()
    finally:
        child.kill()
        child.wait()
    ignored = int(status.split("SigIgn:")[1].split()[0], 16)
    return "ignores SIGTERM" if ignored & (1 << (signal.SIGTERM - 1)) else "stops on SIGTERM"

signal.signal(signal.SIGINT, signal.SIG_IGN)
print(child_after_a_job_in_process())
restore_stop_signals()
print(child_after_a_job_in_process())
"""


def test_children_of_a_test_process_started_with_sigint_ignored_stop_on_sigterm(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", TEST_PROCESS],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    # unguarded, Dagster gives SIGTERM the ignored SIGINT's disposition, and children inherit it
    assert result.stdout.splitlines()[-2:] == ["ignores SIGTERM", "stops on SIGTERM"]
