"""`dagster dev` (webserver + daemon) for the end-to-end tests."""

import os
import signal
import subprocess
import sys

import httpx
import pytest

from memberflow_assets.cli.platform import prepare_environment
from memberflow_assets.settings import REPO_ROOT, Settings
from memberflow_assets.testing.network import free_port
from memberflow_assets_tests.helpers import wait_until


@pytest.fixture
def dagster_dev(tmp_path, pg_dsn, make_database, monkeypatch):
    """`dagster dev` on a temporary DAGSTER_HOME and data dir, storage in fresh PostgreSQL databases."""
    data_dir = tmp_path / "data"
    monkeypatch.setenv("MEMBERFLOW_DATA_DIR", str(data_dir))
    monkeypatch.setenv("MEMBERFLOW_PG_DSN", pg_dsn)
    monkeypatch.setenv("MEMBERFLOW_DAGSTER_PG_DSN", make_database())
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    for name in ("MEMBERFLOW_STORAGE_URL", "MEMBERFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    environment = {
        **os.environ,
        **prepare_environment(Settings.from_env()),
        "MEMBERFLOW_SENSOR_INTERVAL_SECONDS": "2",
        "MEMBERFLOW_LANDING_SETTLE_SECONDS": "1",
    }
    port = free_port()
    log = (tmp_path / "dagster_dev.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
        cwd=REPO_ROOT,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # so the whole process group (webserver, daemon, code server) can be stopped
    )
    try:
        wait_until(lambda: _server_up(port), 180, "the Dagster webserver", every=1)
        yield port, data_dir
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
        print((tmp_path / "dagster_dev.log").read_text()[-5000:])


def _server_up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
