"""Dagster resources shared by every domain: the zones and the sales database.

The code location (definitions.py) configures them from the Settings it read, so the Dagster UI
shows each one's real configuration; the sales database's DSN, a secret, as the variable it comes from.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

import dagster as dg
from psycopg2.extensions import connection as PgConnection
from pydantic import Field

from memberflow_assets import postgres
from memberflow_assets.postgres import PG_DSN_ENV
from memberflow_assets.settings import Settings
from memberflow_assets.zones import Zones


class ZonesResource(dg.ConfigurableResource):
    """The data zones' configuration; assets and sensors receive the `Zones` it creates
    (`zones: dg.ResourceParam[Zones]`), Dagster's documented way to vend a plain object."""

    root_url: str = Field(
        description="Root of every zone: an s3:// URL (MEMBERFLOW_STORAGE_URL) or a local folder (MEMBERFLOW_DATA_DIR)."
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (MEMBERFLOW_S3_ENDPOINT_URL); unset: AWS's own."
    )

    @classmethod
    def from_settings(cls, settings: Settings) -> ZonesResource:
        return cls(root_url=settings.zones_url, s3_endpoint_url=settings.s3_endpoint_url)

    def create_resource(self, context: dg.InitResourceContext) -> Zones:
        return Zones(self.root_url, self.s3_endpoint_url)


class SalesDatabase(dg.ConfigurableResource):
    """The sales PostgreSQL database: at `dsn`, or on the embedded server in `embedded_pg_dir`.

    Its schema must be current (`memberflow migrate`, `memberflow start` or the migrate_sales_database
    job); the first use in a process checks that, and fails naming the command when it is not.
    """

    dsn: str | None = Field(
        default=None, description=f"The database's DSN (${PG_DSN_ENV}); unset: the embedded server."
    )
    embedded_pg_dir: str | None = Field(
        default=None, description="Data folder of the embedded PostgreSQL ($MEMBERFLOW_DATA_DIR/.pg), when no dsn."
    )

    @classmethod
    def from_settings(cls, settings: Settings, dsn_as_env_var: bool = False) -> SalesDatabase:
        """`dsn_as_env_var`: the DSN as dg.EnvVar, so that the UI shows the variable's name, not a password."""
        if settings.pg_dsn:
            return cls(dsn=dg.EnvVar(PG_DSN_ENV) if dsn_as_env_var else settings.pg_dsn)
        return cls(embedded_pg_dir=str(settings.embedded_pg_dir))

    def get_dsn(self) -> str:
        """The DSN, once the schema is known to be current (postgres.require_migrated)."""
        return postgres.require_migrated(self.unchecked_dsn())

    def unchecked_dsn(self) -> str:
        """The DSN whatever the schema (for the migrations themselves)."""
        if self.dsn and self.dsn.strip():
            # stripped: dg.EnvVar resolves the raw value, and a Kubernetes Secret usually ends in a newline
            return self.dsn.strip()
        if not self.embedded_pg_dir:
            raise dg.Failure("SalesDatabase needs a dsn or an embedded_pg_dir")
        return postgres.embedded_sales_dsn(Path(self.embedded_pg_dir))

    def connect(self) -> AbstractContextManager[PgConnection]:
        """A connection whose transaction commits when the block succeeds and rolls back otherwise."""
        return postgres.transaction(self.get_dsn())
