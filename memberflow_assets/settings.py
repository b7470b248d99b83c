"""The platform's configuration: environment variables, each with an embedded default.

The table of variables is in README.md ("Configuration"). Values are read when `Settings.from_env()`
is called, never at import time, so tests and the start command can set them first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    storage_url: str | None
    s3_endpoint_url: str | None
    pg_dsn: str | None
    warehouse: str
    kafka_bootstrap: str | None

    @classmethod
    def from_env(cls) -> Settings:
        data_dir = Path(_env("MEMBERFLOW_DATA_DIR") or "./data").expanduser().resolve()
        return cls(
            data_dir=data_dir,
            storage_url=_env("MEMBERFLOW_STORAGE_URL"),
            s3_endpoint_url=_env("MEMBERFLOW_S3_ENDPOINT_URL") or _env("AWS_ENDPOINT_URL"),
            pg_dsn=_env("MEMBERFLOW_PG_DSN"),
            warehouse=_env("MEMBERFLOW_WAREHOUSE") or str(data_dir / "warehouse.duckdb"),
            kafka_bootstrap=_env("MEMBERFLOW_KAFKA_BOOTSTRAP"),
        )

    @property
    def embedded_pg_dir(self) -> Path:
        return self.data_dir / ".pg"

    @property
    def zones_url(self) -> str:
        """Root of every zone: the S3 URL when configured, else the local data dir."""
        return self.storage_url or str(self.data_dir)


REPO_ROOT = Path(__file__).resolve().parent.parent
SQL_DIR = REPO_ROOT / "sql"


def read_sql(relative_path: str) -> str:
    """Text of a file under the repository's `sql/` folder."""
    return (SQL_DIR / relative_path).read_text(encoding="utf-8")
