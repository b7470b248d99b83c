import dagster as dg
import duckdb

from memberflow_assets.settings import Settings
from memberflow_assets.warehouse import versions
from memberflow_assets.zones import Zones


class Warehouse(dg.ConfigurableResource):
    """The DuckDB warehouse file. Unset `path` means MEMBERFLOW_WAREHOUSE (default
    $MEMBERFLOW_DATA_DIR/warehouse.duckdb). Assets change it only through its one writer
    (memberflow_assets/warehouse/versions.py) and read the published version read-only."""

    path: str | None = None

    def get_path(self) -> str:
        return self.path or Settings.from_env().warehouse

    def open_read_only(self, zones: Zones | None = None) -> duckdb.DuckDBPyConnection:
        return versions.open_published(self.get_path(), zones)
