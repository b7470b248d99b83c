import dagster as dg

from memberflow_assets.settings import Settings


class Warehouse(dg.ConfigurableResource):
    """The DuckDB warehouse file. Unset `path` means MEMBERFLOW_WAREHOUSE (default
    $MEMBERFLOW_DATA_DIR/warehouse.duckdb)."""

    path: str | None = None

    def get_path(self) -> str:
        return self.path or Settings.from_env().warehouse
