import dagster as dg
import duckdb
from pydantic import Field

from memberflow_assets.warehouse import versions
from memberflow_assets.zones import Zones


class Warehouse(dg.ConfigurableResource):
    """The DuckDB warehouse file. Assets change it only through its one writer
    (memberflow_assets/warehouse/versions.py) and read the published version read-only."""

    path: str = Field(
        description="The warehouse file (MEMBERFLOW_WAREHOUSE, default $MEMBERFLOW_DATA_DIR/warehouse.duckdb)."
    )

    def open_read_only(self, zones: Zones | None = None) -> duckdb.DuckDBPyConnection:
        return versions.open_published(self.path, zones)
