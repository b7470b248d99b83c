"""The data version of the sales database as Dagster observes it: what changes when the shop, logistics or
the sales team write (sql/sales/data_version.sql). No Dagster."""

from psycopg2.extensions import connection as PgConnection

from memberflow_assets.settings import read_sql

DATA_VERSION_SQL = read_sql("sales/data_version.sql")


def sales_data_version(connection: PgConnection) -> str:
    """E.g. 'transactions 1042 updated 2026-01-31T09:15:02.123456 catalogue 3f2a9c0d1b7e'."""
    with connection.cursor() as cursor:
        cursor.execute(DATA_VERSION_SQL)
        return cursor.fetchone()[0]
