"""Fixtures of the image processing tests."""

import pytest

from memberflow_assets.postgres import apply_migrations


@pytest.fixture
def migrated_database(pg_dsn) -> str:
    """pg_dsn with every migration applied (the sales and images schemas), for modules whose every test needs
    them: `pytestmark = pytest.mark.usefixtures("migrated_database")`."""
    apply_migrations(pg_dsn)
    return pg_dsn
