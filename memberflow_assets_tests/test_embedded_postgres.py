"""The embedded default: started on demand under MEMBERFLOW_DATA_DIR/.pg, two databases, stoppable."""

import shutil
import tempfile
from pathlib import Path

import psycopg2

from memberflow_assets import postgres
from memberflow_assets.cli import main
from memberflow_assets.settings import Settings


def test_embedded_server_on_demand_with_sales_and_dagster_databases(monkeypatch, capsys):
    data_dir = Path(tempfile.mkdtemp(prefix="mfd", dir="/tmp"))  # short: unix socket paths are limited
    for name in ("MEMBERFLOW_PG_DSN", "MEMBERFLOW_DAGSTER_PG_DSN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MEMBERFLOW_DATA_DIR", str(data_dir))
    settings = Settings.from_env()
    try:
        dsn = postgres.sales_dsn(settings)
        dagster_url = postgres.dagster_storage_url(settings)

        assert (data_dir / ".pg" / "PG_VERSION").exists()
        assert dsn.endswith("/memberflow?host=" + dsn.split("?host=")[1])
        assert dagster_url.startswith("postgresql+psycopg2://") and "/dagster?" in dagster_url
        assert postgres.apply_migrations(dsn)  # a new database gets every migration
        assert postgres.apply_migrations(dsn) == []  # and only once
        with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM sales.members")
            assert cursor.fetchone() == (0,)

        assert main(["stop-postgres"]) == 0
        assert "stopped" in capsys.readouterr().out
        assert not (data_dir / ".pg" / "postmaster.pid").exists()
        assert main(["stop-postgres"]) == 0
        assert "not running" in capsys.readouterr().out
    finally:
        postgres.stop_embedded(data_dir / ".pg")
        shutil.rmtree(data_dir, ignore_errors=True)
