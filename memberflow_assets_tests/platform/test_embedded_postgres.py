"""The embedded default: started on demand under MEMBERFLOW_DATA_DIR/.pg, two databases, stoppable."""

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg2
import pytest

from memberflow_assets import postgres
from memberflow_assets.cli import main
from memberflow_assets.settings import REPO_ROOT, Settings


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

        # Secured as the platform starts it: passwords for every role but postgres, no PUBLIC access to
        # its other databases; rewritten at every start, whatever was edited in between.
        hba = data_dir / ".pg" / "pg_hba.conf"
        assert hba.read_text() == postgres.EMBEDDED_HBA
        with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT datname::text FROM pg_database WHERE datallowconn AND (datacl IS NULL OR "
                           "EXISTS (SELECT FROM aclexplode(datacl) a WHERE a.grantee = 0)) ORDER BY 1")  # fmt: skip
            assert cursor.fetchall() == []  # (the sales database's migrations grant CONNECT to the teams)
        connection.close()
        hba.write_text("local all all trust\n")
        assert main(["stop-postgres"]) == 0
        assert "stopped" in capsys.readouterr().out
        started = subprocess.run(  # started again by another process, as every Dagster process may
            [sys.executable, "-m", "memberflow_assets.cli", "env"], capture_output=True, text=True, cwd=REPO_ROOT
        )
        assert started.returncode == 0, started.stderr
        assert hba.read_text() == postgres.EMBEDDED_HBA
        with pytest.raises(psycopg2.OperationalError, match="password"):
            psycopg2.connect(dsn, user="anyone_else")

        assert main(["stop-postgres"]) == 0
        assert "stopped" in capsys.readouterr().out
        assert not (data_dir / ".pg" / "postmaster.pid").exists()
        assert main(["stop-postgres"]) == 0
        assert "not running" in capsys.readouterr().out
    finally:
        postgres.stop_embedded(data_dir / ".pg")
        shutil.rmtree(data_dir, ignore_errors=True)
