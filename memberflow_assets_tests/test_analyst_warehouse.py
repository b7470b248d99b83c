"""The notebook app's warehouse access: the chart queries, the sandboxed SQL cell, following new versions."""

import os
from decimal import Decimal

import psycopg2
import pytest

from memberflow_assets.settings import Settings
from memberflow_assets.warehouse import analyst as analyst_module
from memberflow_assets.warehouse import versions
from memberflow_assets.warehouse.analyst import AnalystWarehouse, sample_queries
from memberflow_assets.warehouse.refresh import refresh_warehouse
from memberflow_assets.zones import Zones

from .sales_data import add_transaction
from .warehouse_data import KNOWN, build_known_warehouse


@pytest.fixture
def analyst(memberflow_env, pg_dsn, zones) -> AnalystWarehouse:
    build_known_warehouse(pg_dsn, zones, Settings.from_env().warehouse)
    return AnalystWarehouse.from_settings()


def test_the_chart_queries_answer_with_the_known_figures(analyst):
    members = analyst.chart_data("top_members")
    assert len(members) == 10 and list(members.columns) == ["rank", "member", "transactions", "total_spent"]
    assert (members.member[0], str(members.total_spent[0])) == KNOWN["top_member"]
    assert (members.member[1], str(members.total_spent[1])) == KNOWN["second_member"]
    assert list(analyst.chart_data("top_items").item_name) == KNOWN["top_items"]
    sales = analyst.chart_data("sales_per_day")
    assert len(sales) == KNOWN["sales_days"] and str(sales.revenue.iloc[-1]) == KNOWN["revenue_2025_03_03"]
    outcomes = analyst.chart_data("applications_by_outcome")
    assert dict(zip(outcomes.outcome, outcomes.applications_in_outcome, strict=True)) == KNOWN["applications"]
    assert (
        tuple(outcomes[outcomes.outcome == "unsuccessful"].iloc[0][["reason", "applications"]])
        == (KNOWN["top_rejection"])
    )
    per_hour = analyst.chart_data("images_per_hour")
    assert per_hour.images.sum() == KNOWN["images"] and per_hour[per_hour.status == "rejected"].images.sum() == 1
    formats = analyst.chart_data("image_formats")
    assert dict(zip(formats.format, formats.images, strict=True)) == KNOWN["image_formats"]
    assert analyst.chart_data("image_sizes").images.sum() == sum(KNOWN["image_formats"].values())


def test_the_sql_cell_runs_queries_with_a_row_limit_and_a_time_limit(analyst):
    result = analyst.run("SELECT item_name, times_bought FROM bi.top_items_by_purchases ORDER BY rank")
    assert result.error is None and list(result.frame.item_name) == KNOWN["top_items"] and not result.truncated
    many = AnalystWarehouse(analyst.warehouse_path, analyst.zones, max_rows=5).run("FROM range(100)")
    assert many.truncated and len(many.frame) == 5
    assert analyst.run("SELEC 1").error.startswith("Parser Error")
    assert analyst.run("   ").error == "no query"
    slow = AnalystWarehouse(analyst.warehouse_path, analyst.zones, query_timeout=0.5)
    stopped = slow.run("SELECT count(*) FROM range(100000000) a, range(100000) b WHERE a.range + b.range = -1")
    assert stopped.error.startswith("stopped after 0.5 s")
    assert slow.run("SELECT 42 AS answer").frame.answer.tolist() == [42]  # the next query works
    for name, sql in sample_queries().items():  # the sample analyst queries offered in the cell all run
        assert analyst.run(sql).error is None, name


@pytest.mark.parametrize(
    "attack",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/proc/self/environ')",  # the process's secrets
        "SELECT * FROM read_parquet('{zones}/members/successful/known.parquet')",  # personal data in the zones
        "SELECT * FROM read_parquet('{zones}/images/metadata/../../members/successful/known.parquet')",
        "COPY (SELECT 1) TO '{zones}/images/metadata/evil.parquet'",
        "ATTACH '{warehouse}' AS writable",
        "INSTALL httpfs",
        "SET enable_external_access = true",
        "SET lock_configuration = false",
        "SET memory_limit = '100GB'",
        "CREATE TABLE mine AS SELECT 1",
        "SELECT * FROM glob('/*')",
    ],
)
def test_the_sql_cell_cannot_leave_the_warehouse(analyst, attack):
    sql = attack.format(zones=analyst.zones.url(""), warehouse=analyst.warehouse_path)
    result = analyst.run(sql)
    assert result.error is not None and result.frame is None, sql
    assert analyst.run("SELECT count(*) AS n FROM bi.image_metadata").frame.n.tolist() == [KNOWN["images"]]


def test_the_app_follows_newer_versions_without_a_restart(analyst, pg_dsn, zones):
    first = analyst.current()
    other_session = AnalystWarehouse.from_settings()  # another browser tab: same process, same database
    assert other_session.current() == first and other_session.run("SELECT 1 AS one").frame.one.tolist() == [1]
    with psycopg2.connect(pg_dsn) as connection, connection.cursor() as cursor:
        add_transaction(cursor, "turing_f6a7b", [(3, 4)], created_at="2025-03-04T10:00:00Z")  # 4 toasters
    connection.close()
    assert analyst.chart_data("top_members").member[0] == "Grace Hopper"
    refresh_warehouse(pg_dsn, analyst.warehouse_path, zones)
    assert analyst.current() != first
    top = analyst.chart_data("top_members")
    assert (top.member[0], top.total_spent[0]) == ("Alan Turing", Decimal("196.50"))
    assert analyst.published_at().endswith(" UTC")


def test_without_a_warehouse_the_cell_says_so(memberflow_env):
    analyst = AnalystWarehouse.from_settings()
    assert analyst.current() is None
    assert "no warehouse published" in analyst.run("SELECT 1").error
    with pytest.raises(FileNotFoundError):
        analyst.chart_data("top_members")


def test_on_s3_zones_the_image_views_are_readable_and_nothing_else(s3_env, pg_dsn, tmp_path):
    zones = Zones.from_settings()
    build_known_warehouse(pg_dsn, zones, Settings.from_env().warehouse)
    analyst = AnalystWarehouse.from_settings()
    assert analyst.chart_data("images_per_hour").images.sum() == KNOWN["images"]
    assert analyst.run(f"FROM read_parquet('{zones.url('members/successful/known.parquet')}')").error is not None


def test_a_version_that_cannot_be_opened_is_not_switched_to(analyst):
    first = analyst.current()
    broken = os.path.join(versions.versions_folder(analyst.warehouse_path), "99999999999999999-deadbeef.duckdb")
    with open(broken, "wb") as handle:
        handle.write(b"not a database" * 1000)
    link = analyst.warehouse_path + ".new-link"
    os.symlink(broken, link)
    os.replace(link, analyst.warehouse_path)  # as if a broken file had been published
    assert analyst.current() == first
    assert analyst.run("SELECT count(*) AS n FROM bi.top_members_by_spending").frame.n.tolist() == [10]
    fresh = AnalystWarehouse.from_settings()  # a new session has nothing to fall back on: it says so
    assert fresh.run("SELECT 1").error is not None


def test_chart_results_are_shared_by_sessions_for_a_short_while_per_version(analyst, zones, monkeypatch):
    first = analyst.chart_data("images_per_hour")
    other_session = AnalystWarehouse.from_settings()
    assert other_session.chart_data("images_per_hour") is first  # no second query for the next analyst
    zones.delete(f"images/metadata/{KNOWN['image_hours'][1]}.parquet")  # the views read live files
    monkeypatch.setattr(analyst_module, "CHART_CACHE_SECONDS", 0.0)
    assert other_session.chart_data("images_per_hour").images.sum() == KNOWN["images"] - 2
