"""Dagster resources shared by every domain: the zones, the sales database, the DataFrame IO manager.

Each resource's fields default to the environment (memberflow_assets.settings), so one Definitions
object serves the laptop (local folders, embedded PostgreSQL) and production (S3, RDS) unchanged.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import dagster as dg
import pandas as pd
import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
from psycopg2.extensions import connection as PgConnection
from upath import UPath

from memberflow_assets import postgres
from memberflow_assets.settings import Settings
from memberflow_assets.zones import Zones


class ZonesResource(dg.ConfigurableResource):
    """The data zones. Unset fields fall back to MEMBERFLOW_STORAGE_URL / MEMBERFLOW_DATA_DIR."""

    root_url: str | None = None
    s3_endpoint_url: str | None = None

    def get_zones(self) -> Zones:
        settings = Settings.from_env()
        return Zones(self.root_url or settings.zones_url, self.s3_endpoint_url or settings.s3_endpoint_url)


@cache
def _migrated(dsn: str) -> bool:
    postgres.apply_migrations(dsn)
    return True


class SalesDatabase(dg.ConfigurableResource):
    """The sales PostgreSQL database. Unset `dsn` means MEMBERFLOW_PG_DSN, else the embedded server.

    The schema is migrated to the latest version the first time a process connects.
    """

    dsn: str | None = None

    def get_dsn(self) -> str:
        return self.dsn or postgres.sales_dsn()

    @contextmanager
    def connect(self) -> Iterator[PgConnection]:
        """A connection whose transaction commits when the block succeeds and rolls back otherwise."""
        dsn = self.get_dsn()
        _migrated(dsn)
        connection = psycopg2.connect(dsn, application_name="memberflow")
        try:
            with connection:
                yield connection
        finally:
            connection.close()


class _ParquetUPathIOManager(dg.UPathIOManager):
    extension = ".parquet"

    def dump_to_path(self, context: dg.OutputContext, obj: pd.DataFrame, path: UPath) -> None:
        table = pa.Table.from_pandas(obj, preserve_index=False)
        with path.open("wb") as handle:
            pq.write_table(table, handle, compression="lz4")  # intermediate data: fast over small
        context.add_output_metadata({"rows": len(obj)})

    def load_from_path(self, context: dg.InputContext, path: UPath) -> pd.DataFrame:
        with path.open("rb") as handle:
            return pq.read_table(handle).to_pandas()


class ParquetIOManager(dg.ConfigurableIOManagerFactory):
    """Stores DataFrames passed between assets as Parquet under the zones' `io/` folder."""

    zones: dg.ResourceDependency[ZonesResource]

    def create_io_manager(self, context: dg.InitResourceContext) -> _ParquetUPathIOManager:
        zones = self.zones.get_zones()
        if zones.is_s3:
            base = UPath(zones.url("io"), endpoint_url=zones.fs.endpoint_url)
        else:
            base = UPath(zones.path("io"))
        return _ParquetUPathIOManager(base_path=base)
