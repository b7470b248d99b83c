"""Dagster resources shared by every domain: the zones and the sales database.

Each resource's fields default to the environment (memberflow_assets.settings), so one Definitions
object serves the laptop (local folders, embedded PostgreSQL) and production (S3, RDS) unchanged.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import dagster as dg
import psycopg2
from psycopg2.extensions import connection as PgConnection

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

    def migrated_dsn(self) -> str:
        """The DSN, once the schema is at the latest version."""
        dsn = self.get_dsn()
        _migrated(dsn)
        return dsn

    @contextmanager
    def connect(self) -> Iterator[PgConnection]:
        """A connection whose transaction commits when the block succeeds and rolls back otherwise."""
        dsn = self.migrated_dsn()
        connection = psycopg2.connect(dsn, application_name="memberflow")
        try:
            with connection:
                yield connection
        finally:
            connection.close()
